"""What ``nodelimits version`` prints: the package version and the git revision it was
built from.

The revision comes from the first of these that knows it:

1. a git checkout: the package runs from a work tree (``webhook/`` beside ``.git``, as in
   an editable install or ``python -m webhook``): ``git rev-parse HEAD``, ``-dirty`` when
   tracked files differ from it (the image label's form, ``devtools.image.git_revision``);
2. the file ``webhook/REVISION``, written at build time (the Dockerfile writes its
   ``REVISION`` build argument there; the file is not tracked);
3. the installer's record (PEP 610 ``direct_url.json``): ``pip install git+URL@REF``
   records the commit it installed;
4. otherwise ``unknown``.

Never raises: a missing git binary, a broken checkout or no metadata is ``unknown``.
"""

from __future__ import annotations

import json
import subprocess
from importlib import metadata
from pathlib import Path

__all__ = ["DISTRIBUTION", "UNKNOWN", "revision", "version"]

DISTRIBUTION = "nodelimits"
UNKNOWN = "unknown"
REVISION_FILE = "REVISION"
_GIT_TIMEOUT = 5.0  # seconds; a hung git must not hang `nodelimits version`

_PACKAGE = Path(__file__).resolve().parent


def version() -> str:
    """The installed distribution's version, ``unknown`` when it is not installed."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return UNKNOWN


def revision(package: Path = _PACKAGE) -> str:
    """The git revision of the code in ``package`` (see the module docstring)."""
    return (
        _checkout_revision(package.parent)
        or _file_revision(package / REVISION_FILE)
        or _installed_revision()
        or UNKNOWN
    )


def _checkout_revision(root: Path) -> str | None:
    # Only the package's own parent counts: an installed copy in a venv that happens to
    # sit inside some work tree must not report that tree's commit.
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--verify", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=_GIT_TIMEOUT,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "diff", "--quiet", "HEAD", "--", "."],
            capture_output=True,
            check=False,
            timeout=_GIT_TIMEOUT,
        ).returncode
    except (OSError, subprocess.SubprocessError):
        return None
    if not head:
        return None
    return f"{head}-dirty" if dirty else head


def _file_revision(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if text and text != UNKNOWN else None


def _installed_revision() -> str | None:
    try:
        recorded = metadata.distribution(DISTRIBUTION).read_text("direct_url.json")
        commit = json.loads(recorded or "null")["vcs_info"]["commit_id"]
    except (metadata.PackageNotFoundError, ValueError, KeyError, TypeError):
        return None
    return commit if isinstance(commit, str) and commit else None
