"""webhook.buildinfo: where `nodelimits version` finds the git revision (real git, real
distribution metadata on sys.path)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from webhook import buildinfo

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args],
        capture_output=True,
        text=True,
        check=True,
        env=GIT_ENV | {"PATH": "/usr/bin:/bin:/usr/local/bin"},
        timeout=30,
    ).stdout.strip()


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A work tree with the package in it and one commit; returns the package directory."""
    root = tmp_path / "repo"
    package = root / "webhook"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    git(root, "init", "--quiet")
    git(root, "add", ".")
    git(root, "commit", "--quiet", "-m", "one")
    return package


def test_a_checkout_reports_its_head_commit(checkout: Path) -> None:
    assert buildinfo.revision(checkout) == git(checkout.parent, "rev-parse", "HEAD")


def test_a_checkout_with_changed_tracked_files_is_dirty(checkout: Path) -> None:
    (checkout / "__init__.py").write_text("changed = True\n")
    assert buildinfo.revision(checkout) == git(checkout.parent, "rev-parse", "HEAD") + "-dirty"


def test_a_checkout_wins_over_a_stale_build_time_file(checkout: Path) -> None:
    (checkout / "REVISION").write_text("0" * 40 + "\n")  # untracked: not "dirty"
    assert buildinfo.revision(checkout) == git(checkout.parent, "rev-parse", "HEAD")


def test_the_build_time_file_names_the_revision_outside_a_checkout(tmp_path: Path) -> None:
    package = tmp_path / "site-packages" / "webhook"
    package.mkdir(parents=True)
    (package / "REVISION").write_text("abc123\n")
    assert buildinfo.revision(package) == "abc123"


def test_a_build_without_a_revision_argument_is_unknown(tmp_path: Path) -> None:
    """The Dockerfile's default REVISION is "unknown": that is not a commit to report."""
    package = tmp_path / "webhook"
    package.mkdir()
    (package / "REVISION").write_text("unknown\n")
    assert buildinfo.revision(package) == "unknown"


def test_an_installed_copy_inside_some_work_tree_does_not_report_that_tree(
    checkout: Path,
) -> None:
    """A venv under a checkout (.venv/lib/.../site-packages) is not that checkout's code."""
    installed = checkout.parent / ".venv" / "site-packages" / "webhook"
    installed.mkdir(parents=True)
    assert buildinfo.revision(installed) == "unknown"


def test_a_git_install_reports_the_commit_pip_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pip install git+URL@REF writes direct_url.json (PEP 610) with the commit."""
    dist_info = tmp_path / "path" / "nodelimits-0.1.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: nodelimits\nVersion: 0.1.0\n")
    commit = "1f" * 20
    (dist_info / "direct_url.json").write_text(
        json.dumps({"url": "https://example.com/nodelimits.git",
                    "vcs_info": {"vcs": "git", "commit_id": commit}})
    )  # fmt: skip
    monkeypatch.syspath_prepend(str(tmp_path / "path"))
    package = tmp_path / "site-packages" / "webhook"
    package.mkdir(parents=True)
    assert buildinfo.revision(package) == commit


def test_a_local_install_records_no_commit_and_is_unknown(tmp_path: Path) -> None:
    """This environment's own install (editable, dir_info): no vcs_info to read."""
    package = tmp_path / "webhook"
    package.mkdir()
    assert buildinfo.revision(package) == "unknown"


def test_version_is_the_installed_distributions() -> None:
    from importlib import metadata

    assert buildinfo.version() == metadata.version("nodelimits")
