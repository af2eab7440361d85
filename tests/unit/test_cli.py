"""webhook.cli beyond `check` (tests/unit/test_check_cli.py): version, completion, limits,
simulate."""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from devtools.stack import Process, wait_until
from webhook import buildinfo
from webhook.cli import main

VENV_BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


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


# --- limits -------------------------------------------------------------------------------


@pytest.fixture
def limits_config(tmp_path: Path) -> Path:
    """Settings reading the example limits file (kshdtest is a dcu group)."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"platform": {"limits_file": str(EXAMPLES / "limits.yaml")}}))
    return path


def test_limits_of_a_group_offered_under_another_type_says_which(limits_config: Path) -> None:
    result = CliRunner().invoke(
        main, ["limits", "kshdtest", "-t", "gpu", "--config", str(limits_config)]
    )
    assert result.exit_code == 2
    assert (
        result.stderr == 'error: platform: resource group "kshdtest" is offered as dcu, not gpu\n'
    )


def test_limits_of_a_group_nobody_offers_is_still_unknown(limits_config: Path) -> None:
    result = CliRunner().invoke(
        main, ["limits", "nope", "-t", "gpu", "--config", str(limits_config)]
    )
    assert result.exit_code == 2
    assert "offered as" not in result.stderr
    assert 'resource group "nope" has no gpu limits in the limits file' in result.stderr


def test_limits_all_of_a_type_lists_only_that_type(limits_config: Path) -> None:
    result = CliRunner().invoke(
        main, ["limits", "--all", "-t", "dcu", "--config", str(limits_config)]
    )
    assert result.exit_code == 0, result.output
    assert [line.split()[0] for line in result.stdout.splitlines()[1:]] == ["kshdtest"]


def test_a_connection_failure_names_the_url_and_no_credentials(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    with socket.socket() as bound:  # bound, never listening: connections are refused
        bound.bind(("127.0.0.1", 0))
        port = bound.getsockname()[1]
        config.write_text(yaml.safe_dump({"platform": {
            "base_url": f"http://127.0.0.1:{port}", "center_url": f"http://127.0.0.1:{port}",
            "aksk_url": f"http://127.0.0.1:{port}", "token_source": "aksk",
            "user": "sim", "access_key": "the-ak", "secret_key": "the-sk",
            "connect_timeout": 0.5, "request_timeout": 0.5, "deadline": 1.5,
        }}))  # fmt: skip
        result = CliRunner().invoke(main, ["limits", "TeslaM40", "--config", str(config)])
    assert result.exit_code == 2
    assert result.stderr.startswith(
        f"error: platform: platform tokens-aksk: network error (ConnectError) calling "
        f"http://127.0.0.1:{port}/"
    )
    assert "the-ak" not in result.output
    assert "the-sk" not in result.output


# --- simulate -----------------------------------------------------------------------------


def help_examples(*command: str) -> list[str]:
    """The command lines under "Examples:" in COMMAND --help, as printed."""
    text = CliRunner().invoke(main, [*command, "--help"]).stdout
    block = text.split("Examples:\n", 1)[1].split("\n\n", 1)[0]
    return [line.strip() for line in block.splitlines()]


def test_the_simulate_help_example_works_as_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run from the repository's root, as the help says; the simulator on its default port."""
    serve_line, client_line = help_examples("simulate")
    monkeypatch.chdir(ROOT)
    env = dict(os.environ, PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    env = {k: v for k, v in env.items() if not k.startswith("NODELIMITS_")}
    argv = shlex.split(serve_line)
    simulator = Process("simulator", [str(VENV_BIN / argv[0]), *argv[1:]],
                        tmp_path / "simulator.log", env)  # fmt: skip
    try:
        wait_until("simulator", lambda: "listening on" in simulator.tail(), simulator, 60)
        client = subprocess.run(
            shlex.split(client_line), capture_output=True, text=True, check=False,
            timeout=60, env=env,
        )  # fmt: skip
    finally:
        simulator.stop()
    assert client.returncode == 0, client.stderr
    header, row = client.stdout.splitlines()
    assert header.split()[:3] == ["GROUP", "TYPE", "CPU"]
    assert row.split()[:3] == ["TeslaM40", "gpu", "40"]


def test_run_as_a_module_it_calls_itself_nodelimits() -> None:
    assert run("check", "--help").stdout.startswith("Usage: nodelimits check [OPTIONS]")
