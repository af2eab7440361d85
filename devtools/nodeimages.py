"""The container images the real node runs, made on this machine (no registry is reachable).

- `pause`: the sandbox image (containerd's `sandbox_image`): busybox running `sleep`.
- `busybox`: a small shell image for test pods (Debian's busybox-static and its applets).
- `nodelimits_from_dockerfile`: the Dockerfile built by podman (devtools/image.py, the
  release's build), saved as an OCI archive: what `nodelimits_image` gives by default.
- `nodelimits_from_host`: nodelimits and its runtime dependencies as installed for this
  Python (a venv's too), with the interpreter, its standard library and the shared
  libraries they load, at the same paths: where podman cannot run, or when asked
  (`NODELIMITS_NODE_IMAGE=host`).

The local images are named under `registry.nodelimits.invalid` (a `.invalid` name never
resolves: a pod whose image is missing fails at once instead of reaching out of the
machine), the Dockerfile's `localhost/nodelimits:test`; pods use `imagePullPolicy: Never`.
Archives are cached by their inputs' digest (or image id) in the directory the caller gives.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import sysconfig
import tarfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from devtools import image as dockerfile_image
from devtools.ociimage import ImageConfig, Layer, write_image

__all__ = [
    "BUSYBOX",
    "NODELIMITS",
    "PAUSE",
    "REGISTRY",
    "ImageArchive",
    "ImageUnavailable",
    "busybox",
    "nodelimits_from_dockerfile",
    "nodelimits_from_host",
    "nodelimits_image",
    "pause",
]

REGISTRY = "registry.nodelimits.invalid"
PAUSE = f"{REGISTRY}/pause:1"
BUSYBOX = f"{REGISTRY}/busybox:1"
NODELIMITS = f"{REGISTRY}/nodelimits:dev"
BUSYBOX_BINARY = Path("/bin/busybox")
ENV_IMAGE_ARCHIVE = "NODELIMITS_IMAGE_ARCHIVE"
ENV_NODE_IMAGE = "NODELIMITS_NODE_IMAGE"
DOCKERFILE_TAG = "localhost/nodelimits:test"
REPO_ROOT = Path(__file__).resolve().parents[1]
UID = 65532
"""The chart's runAsUser (and the Dockerfile's USER)."""

_PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    f"nonroot:x:{UID}:{UID}:nonroot:/tmp:/bin/false\n"
    "nobody:x:65534:65534:nobody:/:/bin/false\n"
)
_GROUP = f"root:x:0:\nnonroot:x:{UID}:\nnobody:x:65534:\n"
# Parts of the standard library a server never imports (tests alone are 30 MB).
_STDLIB_SKIP = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "site-packages"}
_STDLIB_SKIP_PREFIX = "config-"  # the static libpython and build files (44 MB)


class ImageUnavailable(RuntimeError):
    """An image cannot be made here (e.g. busybox-static is not installed)."""


@dataclass(frozen=True, slots=True)
class ImageArchive:
    """An OCI archive on disk and the image name it carries."""

    name: str
    path: Path


def pause(cache: Path) -> ImageArchive:
    return _busybox_image(cache, PAUSE, ImageConfig(entrypoint=("/bin/sleep", "infinity")))


def busybox(cache: Path) -> ImageArchive:
    return _busybox_image(cache, BUSYBOX, ImageConfig(cmd=("sh",)))


def _busybox_image(cache: Path, name: str, config: ImageConfig) -> ImageArchive:
    if not BUSYBOX_BINARY.is_file():
        raise ImageUnavailable(
            f"{BUSYBOX_BINARY} is missing: install Debian's busybox-static (.ci/run does)"
        )
    key = _digest([BUSYBOX_BINARY], name, repr(config))
    out = cache / f"{name.rsplit('/', 1)[1].replace(':', '-')}-{key}.tar"
    if not out.exists():
        layer = Layer()
        _base_tree(layer)
        layer.add_file("bin/busybox", BUSYBOX_BINARY, 0o755)
        applets = subprocess.run(
            [str(BUSYBOX_BINARY), "--list"], capture_output=True, text=True, check=True
        ).stdout.split()
        for applet in sorted(set(applets) - {"busybox"}):
            layer.add_symlink(f"bin/{applet}", "busybox")
        write_image(out, name, layer, config)
    return ImageArchive(name, out)


def _base_tree(layer: Layer) -> None:
    for directory in ("bin", "etc", "proc", "sys", "dev", "var", "root", "usr"):
        layer.add_dir(directory)
    layer.add_dir("tmp", 0o1777)
    layer.add_bytes("etc/passwd", _PASSWD.encode())
    layer.add_bytes("etc/group", _GROUP.encode())


def nodelimits_from_host(cache: Path) -> ImageArchive:
    """nodelimits as this Python runs it, packed at the same paths: `nodelimits serve`."""
    files = sorted(set(_python_files()))
    libraries = sorted(set(_shared_libraries(p for p in files if _is_elf(p))))
    sources = sorted((REPO_ROOT / "webhook").rglob("*.py"))
    # bytecode is packed but not keyed: Python rewrites it at will, and ignores a stale one
    key = _digest(
        [p for p in [*files, *libraries, *sources] if "__pycache__" not in p.parts], NODELIMITS
    )
    out = cache / f"nodelimits-host-{key}.tar"
    if out.exists():
        return ImageArchive(NODELIMITS, out)
    _prune(cache.glob("nodelimits-host-*.tar"))
    layer = Layer()
    _base_tree(layer)
    app = Path("/opt/nodelimits/app")
    for source in sources:
        layer.add_file(str(app / source.relative_to(REPO_ROOT)), source, 0o644)
    for path in [*files, *libraries]:
        _add_with_links(layer, path)
    python = Path(sys.executable).resolve()
    launcher = f"#!{python}\nfrom webhook.cli import main\nmain()\n"
    layer.add_bytes("usr/local/bin/nodelimits", launcher.encode(), 0o755)
    config = ImageConfig(
        entrypoint=("/usr/local/bin/nodelimits", "serve"),
        env=(
            "PATH=/usr/local/bin:/bin",
            # a venv's site-packages is not on the base interpreter's path: name it
            "PYTHONPATH=" + ":".join([str(app), *_site_dirs()]),
            "PYTHONDONTWRITEBYTECODE=1",
            "PYTHONUNBUFFERED=1",
            "HOME=/tmp",
        ),
        user=f"{UID}:{UID}",
    )
    write_image(out, NODELIMITS, layer, config)
    return ImageArchive(NODELIMITS, out)


def nodelimits_image(
    cache: Path, *, fallback: bool = True, log: Callable[[str], None] | None = None
) -> ImageArchive:
    """The nodelimits image to run, first of:

    - `$NODELIMITS_IMAGE_ARCHIVE`: an OCI archive (e.g. `make release`'s);
    - `$NODELIMITS_NODE_IMAGE=host`: `nodelimits_from_host(cache)` (quick to iterate on);
    - the Dockerfile built by podman (devtools/image.py, tag `localhost/nodelimits:test`,
      the one tests/release builds: its layers are shared), saved as an OCI archive;
    - with `fallback`, when podman cannot run here at all (not installed, not root; a
      failed build is an error): `nodelimits_from_host(cache)`, saying so through `log`.
    """
    configured = os.environ.get(ENV_IMAGE_ARCHIVE)
    if configured:
        return _named_archive(Path(configured))
    if os.environ.get(ENV_NODE_IMAGE, "") == "host":
        return nodelimits_from_host(cache)
    try:
        return nodelimits_from_dockerfile(cache, log=log)
    except dockerfile_image.ImageUnavailable as exc:
        if not (fallback and exc.missing):
            raise ImageUnavailable(f"the image from the Dockerfile: {exc}") from exc
        if log is not None:
            log(f"[image] {exc}; using nodelimits as this Python runs it instead")
        return nodelimits_from_host(cache)


def nodelimits_from_dockerfile(
    cache: Path, *, log: Callable[[str], None] | None = None
) -> ImageArchive:
    """`podman build` of the Dockerfile and this work tree (cached layers: seconds when
    nothing changed), saved once per image id as an OCI archive for `ctr import`."""
    podman = dockerfile_image.Podman.default()
    if log is not None:
        log(f"[image] podman build of the Dockerfile as {DOCKERFILE_TAG}")
    built = dockerfile_image.build_image(DOCKERFILE_TAG, podman=podman, log=log)
    out = cache / f"nodelimits-oci-{built.image_id[:16]}.tar"
    if not out.exists():
        _prune(cache.glob("nodelimits-oci-*.tar"))
        partial = out.with_name(out.name + ".partial")
        dockerfile_image.save_oci_archive(built.ref, partial, podman)
        partial.rename(out)
    return ImageArchive(built.ref, out)


def _named_archive(path: Path) -> ImageArchive:
    """An OCI archive and the name containerd gives it on import."""
    try:
        with tarfile.open(path) as tar:
            member = tar.extractfile("index.json")
            index = json.load(member) if member else {}
    except (OSError, tarfile.TarError, KeyError, ValueError) as exc:
        raise ImageUnavailable(f"${ENV_IMAGE_ARCHIVE}={path}: not an OCI archive ({exc})") from exc
    for manifest in index.get("manifests", []):
        annotations = manifest.get("annotations", {})
        # containerd's own name, else the OCI ref name when it is a whole reference (podman)
        name = annotations.get("io.containerd.image.name") or annotations.get(
            "org.opencontainers.image.ref.name", ""
        )
        if name and ":" in name.rsplit("/", 1)[-1]:
            return ImageArchive(str(name), path)
    raise ImageUnavailable(
        f"${ENV_IMAGE_ARCHIVE}={path}: index.json names no image (io.containerd.image.name "
        "or a whole reference in org.opencontainers.image.ref.name)"
    )


def _python_files() -> Iterator[Path]:
    """The interpreter, the standard library (less tests and GUIs) and the distributions
    nodelimits needs at run time (its requirements, recursively, and uvloop)."""
    yield Path(sys.executable).resolve()
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for path in stdlib.rglob("*"):
        parts = path.relative_to(stdlib).parts
        if parts[0] in _STDLIB_SKIP or parts[0].startswith(_STDLIB_SKIP_PREFIX):
            continue
        if not path.is_file() or ".opt-" in path.name:  # -O bytecode: never run
            continue
        yield path
    libdir = sysconfig.get_config_var("LIBDIR")
    ldlibrary = sysconfig.get_config_var("LDLIBRARY")
    if libdir and ldlibrary and (Path(libdir) / ldlibrary).exists():
        yield Path(libdir) / ldlibrary
    for dist in _runtime_distributions():
        for file in dist.files or ():
            path = Path(str(dist.locate_file(file))).resolve()
            if path.is_file():
                yield path


def _site_dirs() -> list[str]:
    """The directories the runtime distributions are installed in."""
    found = {str(Path(str(d.locate_file(""))).resolve()) for d in _runtime_distributions()}
    return sorted(found)


def _runtime_distributions() -> list[importlib.metadata.Distribution]:
    wanted, seen, found = ["nodelimits", "uvloop"], set(), []
    while wanted:
        name = _canonical(wanted.pop())
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # an optional backport this Python does not need
        if name != "nodelimits":  # editable: its code is copied from the work tree
            found.append(dist)
        for requirement in dist.requires or ():
            if "extra ==" not in requirement:
                wanted.append(re.split(r"[\s;<>=!~\[(]", requirement, maxsplit=1)[0])
    return found


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _is_elf(path: Path) -> bool:
    if path.suffix not in (".so", "") and ".so." not in path.name:
        return False
    try:
        with path.open("rb") as file:
            return file.read(4) == b"\x7fELF"
    except OSError:
        return False


def _shared_libraries(binaries: Iterable[Path]) -> Iterator[Path]:
    """What the dynamic loader resolves for each binary (`ldd`), the loader included."""
    for binary in binaries:
        result = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False)
        for line in result.stdout.splitlines():
            match = re.search(r"(/\S+) \(0x", line)
            if match:
                yield Path(match.group(1))


def _add_with_links(layer: Layer, path: Path) -> None:
    """Add `path` under its own name; a symlink (or a symlinked directory on the way,
    e.g. Debian's /lib -> usr/lib) becomes a symlink and its target is added too."""
    parts = path.parts
    for depth in range(2, len(parts)):
        prefix = Path(*parts[:depth])
        if prefix.is_symlink():
            layer.add_symlink(str(prefix), str(prefix.readlink()))
            _add_with_links(layer, prefix.resolve() / Path(*parts[depth:]))
            return
        if str(prefix) not in layer:
            layer.add_dir(str(prefix))
    if path.is_symlink():
        layer.add_symlink(str(path), str(path.readlink()))
        _add_with_links(layer, path.resolve())
    elif path.is_file():
        layer.add_file(str(path), path)


STALE_AFTER = 7200.0
"""Seconds after which an archive of other inputs is deleted (each is ~275 MB); not at
once, as another run that chose it may still be waiting for the node's lock."""


def _prune(archives: Iterable[Path]) -> None:
    for archive in archives:
        with contextlib.suppress(OSError):
            if time.time() - archive.stat().st_mtime > STALE_AFTER:
                archive.unlink()


def _digest(paths: Iterable[Path], *extra: str) -> str:
    """A short key over the inputs' names, sizes and mtimes (cheap, and enough for a cache)."""
    digest = hashlib.sha256("\0".join(extra).encode())
    for path in paths:
        stat = path.stat()
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]
