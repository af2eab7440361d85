"""The nodelimits image, built here from the Dockerfile with podman (no Docker engine, no
registry): the base image, the wheelhouse from the lock, the build, and facts about the
result. Used by ``make image`` / ``make release`` (tools/release.py) and tests/release.

Everything slow is cached under ``~/.cache/nodelimits`` (``$NODELIMITS_CACHE``):

- ``image/base-bookworm-python3.11.tar``: the stand-in for ``python:3.11-slim-bookworm``
  (tools/image/base-image.sh: debootstrap minbase + Debian's python3.11), built only when
  the official base cannot be had, imported under the official name;
- ``wheelhouse/<sha256 of requirements.image.txt>/``: the locked wheels, downloaded on the
  host with the host's pip configuration (its CA bundle), mounted into the build, which
  then needs no index;
- ``containers/``: podman's own storage (images and build layers), apart from the
  machine's, so a warm build reuses its layers.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
IMAGE_REQS = ROOT / "requirements.image.txt"
CONTAINERS_CONF = ROOT / "tools" / "image" / "containers.conf"
BASE_SCRIPT = ROOT / "tools" / "image" / "base-image.sh"
BASE_IMAGE = "docker.io/library/python:3.11-slim-bookworm"
"""The Dockerfile's default ``PYTHON_IMAGE``, fully qualified as podman stores it."""
IMAGE_NAME = "localhost/nodelimits"
BUILD_TIMEOUT = 1800.0


class ImageUnavailable(RuntimeError):
    """A prerequisite is missing (no podman, not root, no debootstrap). One line: what and
    how to fix it. ``missing`` is True when installing something fixes it (tests skip then,
    unless NODELIMITS_REQUIRE_E2E=1), False when something ran and failed."""

    def __init__(self, message: str, *, missing: bool) -> None:
        super().__init__(message)
        self.missing = missing


def cache_dir() -> Path:
    configured = os.environ.get("NODELIMITS_CACHE")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nodelimits"


def project_version() -> str:
    import tomllib

    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return str(data["project"]["version"])


def git_revision() -> str:
    """The commit the image is built from; ``-dirty`` when tracked files differ from it."""
    try:
        rev = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "diff", "--quiet", "HEAD", "--", "."],
            capture_output=True,
            check=False,
        ).returncode
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + ("-dirty" if dirty else "")


@dataclass(frozen=True)
class Podman:
    """podman with this project's containers.conf and storage."""

    storage: Path
    runroot: Path

    @classmethod
    def default(cls) -> Podman:
        if shutil.which("podman") is None:
            raise ImageUnavailable(
                "podman not found: run tools/image/deps.sh as root "
                "(apt-get install podman buildah runc debootstrap docker-registry)",
                missing=True,
            )
        if os.geteuid() != 0:
            raise ImageUnavailable(
                "building the image here needs root (podman storage, debootstrap)", missing=True
            )
        return cls(
            storage=cache_dir() / "containers" / "storage",
            runroot=Path(f"/tmp/nodelimits-podman-{os.getuid()}"),
        )

    def env(self) -> dict[str, str]:
        return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}

    def argv(self, *args: str) -> list[str]:
        return [
            "podman",
            "--root",
            str(self.storage),
            "--runroot",
            str(self.runroot),
            "--storage-driver",
            "overlay",
            *args,
        ]

    def run(
        self, *args: str, check: bool = True, timeout: float = 600.0, quiet: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.argv(*args),
            env=self.env(),
            capture_output=quiet,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            tail = "\n".join((result.stderr or "").strip().splitlines()[-15:])
            raise ImageUnavailable(
                f"podman {args[0]} failed ({result.returncode}): {tail}", missing=False
            )
        return result

    def exists(self, ref: str) -> bool:
        return self.run("image", "exists", ref, check=False).returncode == 0

    def inspect(self, ref: str) -> dict[str, Any]:
        data = json.loads(self.run("image", "inspect", ref).stdout)
        result: dict[str, Any] = data[0]
        return result


def ensure_base(podman: Podman, log: Any = None) -> str:
    """``python:3.11-slim-bookworm`` in podman's storage: already there, or imported from
    the cached stand-in, or that stand-in built first (debootstrap, ~2 minutes)."""
    if podman.exists(BASE_IMAGE):
        return "present"
    tar = cache_dir() / "image" / "base-bookworm-python3.11.tar"
    built = "cached"
    if not tar.exists():
        if shutil.which("debootstrap") is None:
            raise ImageUnavailable(
                f"base image {BASE_IMAGE} absent and debootstrap not found: run "
                "tools/image/deps.sh as root, or `podman pull` the base",
                missing=True,
            )
        tar.parent.mkdir(parents=True, exist_ok=True)
        _say(log, f"building the stand-in base image with debootstrap into {tar}")
        result = subprocess.run(
            ["bash", str(BASE_SCRIPT), str(tar)], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise ImageUnavailable(
                f"base image: {result.stderr.strip().splitlines()[-1:]}", missing=False
            )
        built = "built"
    podman.run(
        "import",
        "--change",
        "ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
        "--change",
        "ENV LANG=C.UTF-8",
        "--change",
        'CMD ["python3"]',
        str(tar),
        BASE_IMAGE,
    )
    return built


def wheelhouse(log: Any = None, reqs: Path = IMAGE_REQS) -> Path:
    """The wheels of requirements.image.txt, hash-checked, for a build without an index.

    Downloaded for this host's platform, which is the image's (Linux, CPython 3.11, glibc
    2.36 on bookworm); the release workflow builds other architectures from the index.
    """
    digest = hashlib.sha256(reqs.read_bytes()).hexdigest()[:16]
    out = cache_dir() / "wheelhouse" / digest
    if (out / ".complete").exists():
        return out
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    _say(log, f"downloading the locked wheels into {out}")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--disable-pip-version-check",
            "--require-hashes",
            "--no-deps",
            "--only-binary",
            ":all:",
            "--dest",
            str(partial),
            "-r",
            str(reqs),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise ImageUnavailable(
            "pip download of requirements.image.txt failed (index reachable? pip config list): "
            + " ".join(result.stderr.strip().splitlines()[-3:]),
            missing=False,
        )
    (partial / ".complete").touch()
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    return out


@dataclass(frozen=True)
class Built:
    ref: str
    image_id: str
    version: str
    revision: str
    base: str
    """present | cached | built: where the base image came from."""


def build_image(
    tag: str | None = None,
    *,
    version: str | None = None,
    revision: str | None = None,
    podman: Podman | None = None,
    context: Path = ROOT,
    log: Any = None,
) -> Built:
    """``podman build`` of the Dockerfile as it is, with the locked wheels mounted.

    ``context``: the work tree by default (tests); a release builds from an export of the
    commit (``git archive``), so what is uncommitted never ships.
    """
    podman = podman or Podman.default()
    version = version or project_version()
    revision = revision or git_revision()
    ref = tag or f"{IMAGE_NAME}:{version}"
    base = ensure_base(podman, log)
    wheels = wheelhouse(log, context / "requirements.image.txt")
    _say(log, f"podman build -t {ref} (base {base}, wheels {wheels})")
    podman.run(
        "build",
        "--layers",
        "--pull=never",
        "--file",
        str(context / "Dockerfile"),
        "--tag",
        ref,
        "--build-arg",
        f"VERSION={version}",
        "--build-arg",
        f"REVISION={revision}",
        "--build-arg",
        "WHEELS=/wheels",
        "--volume",
        f"{wheels}:/wheels:ro",
        str(context),
        timeout=BUILD_TIMEOUT,
    )
    image_id = podman.inspect(ref)["Id"]
    return Built(ref, str(image_id), version, revision, base)


def save_oci_archive(ref: str, path: Path, podman: Podman | None = None) -> Path:
    """The image as an OCI archive (what containerd's ``ctr import`` and skopeo read)."""
    podman = podman or Podman.default()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    podman.run("save", "--format", "oci-archive", "--output", str(path), ref)
    return path


def image_report(ref: str, podman: Podman | None = None) -> dict[str, Any]:
    """Size and what makes it up: the image's bytes, the base's, and site-packages by
    distribution (largest first)."""
    podman = podman or Podman.default()
    info = podman.inspect(ref)
    base = podman.inspect(BASE_IMAGE)
    script = (
        "import importlib.metadata as m, os, json\n"
        "out = {}\n"
        "for d in m.distributions():\n"
        "    size = 0\n"
        "    for f in d.files or []:\n"
        "        p = d.locate_file(f)\n"
        "        if os.path.isfile(p): size += os.path.getsize(p)\n"
        "    out[d.metadata['Name']] = size\n"
        "print(json.dumps(out))\n"
    )
    out = podman.run(
        "run",
        "--rm",
        "--read-only",
        "--network",
        "none",
        "--entrypoint",
        "/opt/nodelimits/bin/python",
        ref,
        "-c",
        script,
    ).stdout
    dists = dict(sorted(json.loads(out).items(), key=lambda kv: -kv[1]))
    return {
        "size": int(info["Size"]),
        "base_size": int(base["Size"]),
        "site_packages": dists,
        "labels": info.get("Labels") or {},
        "user": info.get("Config", {}).get("User", ""),
    }


def _say(log: Any, message: str) -> None:
    if log is not None:
        log(message)
