"""webhook.cli beyond `check` (tests/unit/test_check_cli.py): version, completion, limits,
simulate."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from webhook import buildinfo
from webhook.cli import main

VENV_BIN = Path(sys.executable).parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "webhook", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


# --- version ------------------------------------------------------------------------------


def test_version_prints_the_version_and_the_revision() -> None:
    result = CliRunner().invoke(main, ["version"])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.stdout) == {
        "version": buildinfo.version(),
        "revision": buildinfo.revision(),
    }


def test_version_from_this_checkout_is_its_commit() -> None:
    root = Path(__file__).resolve().parents[2]
    head = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()
    printed = yaml.safe_load(run("version").stdout)["revision"]
    assert printed in (head, f"{head}-dirty")


def test_the_version_option_stays() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"nodelimits, version {buildinfo.version()}\n"


# --- completion ---------------------------------------------------------------------------


def bash(script: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("_NODELIMITS")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", script],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=env,
    )


def test_bash_completion_registers_for_nodelimits() -> None:
    result = bash("source <(nodelimits completion bash) && complete -p nodelimits")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "complete -o nosort -F _nodelimits_completion nodelimits"


def test_bash_completion_completes_a_subcommand() -> None:
    """The printed script, sourced in bash, asks the installed nodelimits for the words."""
    assert (VENV_BIN / "nodelimits").is_file(), "the nodelimits script of this environment"
    result = bash(
        "source <(nodelimits completion bash) && COMP_WORDS=(nodelimits vers) && COMP_CWORD=1 "
        '&& _nodelimits_completion nodelimits && echo "${COMPREPLY[@]}"'
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["version"]


@pytest.mark.parametrize(
    ("shell", "registration"),
    [
        pytest.param("zsh", "compdef _nodelimits_completion nodelimits", id="zsh"),
        pytest.param(
            "fish",
            'complete --no-files --command nodelimits --arguments "(_nodelimits_completion)"',
            id="fish",
        ),
    ],
)
def test_zsh_and_fish_scripts_register_for_nodelimits(shell: str, registration: str) -> None:
    result = CliRunner().invoke(main, ["completion", shell])
    assert result.exit_code == 0, result.output
    assert registration in result.stdout
    assert f"_NODELIMITS_COMPLETE={shell}_complete" in result.stdout


def test_the_script_names_nodelimits_even_when_run_as_a_module() -> None:
    result = run("completion", "bash")
    assert result.returncode == 0, result.stderr
    assert "_NODELIMITS_COMPLETE=bash_complete" in result.stdout
    assert "python" not in result.stdout


def test_completion_for_an_unknown_shell_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["completion", "powershell"])
    assert result.exit_code == 2
    assert "'powershell' is not one of 'bash', 'zsh', 'fish'" in result.stderr
