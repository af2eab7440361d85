"""OCI image-layout archives written from files on this machine: no registry, no Docker.

`ctr images import` (and `podman load`) take the tar this writes: `oci-layout`,
`index.json` naming the image, and the blobs (one uncompressed layer, the config, the
manifest). The real node (devtools/realnode.py) imports its pause and busybox images this
way, so a pod never pulls anything.

    layer = Layer()
    layer.add_file("bin/busybox", Path("/bin/busybox"))
    layer.add_symlink("bin/sh", "busybox")
    write_image(Path("busybox.tar"), "registry.nodelimits.invalid/busybox:1", layer,
                ImageConfig(cmd=("sh",)))

Entries are written in the order added, with mode, uid/gid 0 and mtime 0, so the same
inputs give the same digest.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ImageConfig", "Layer", "write_image"]

_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
_CONFIG = "application/vnd.oci.image.config.v1+json"
_LAYER = "application/vnd.oci.image.layer.v1.tar"
_INDEX = "application/vnd.oci.image.index.v1+json"


@dataclass(frozen=True, slots=True)
class ImageConfig:
    """What the runtime reads from the image config (OCI image spec, `config`)."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ("PATH=/bin",)
    user: str = ""
    workdir: str = "/"

    def as_json(self) -> dict[str, Any]:
        config: dict[str, Any] = {"Env": list(self.env), "WorkingDir": self.workdir}
        if self.entrypoint:
            config["Entrypoint"] = list(self.entrypoint)
        if self.cmd:
            config["Cmd"] = list(self.cmd)
        if self.user:
            config["User"] = self.user
        return config


@dataclass
class Layer:
    """One filesystem layer being assembled in memory (a tar, uncompressed)."""

    _buffer: io.BytesIO = field(default_factory=io.BytesIO)
    _names: set[str] = field(default_factory=set)
    _tar: tarfile.TarFile | None = None

    def _archive(self) -> tarfile.TarFile:
        if self._tar is None:
            self._tar = tarfile.open(  # noqa: SIM115 - open across add_*() calls; data() closes it
                fileobj=self._buffer, mode="w", format=tarfile.PAX_FORMAT
            )
        return self._tar

    def _add(self, info: tarfile.TarInfo, data: bytes | None = None) -> None:
        name = info.name.strip("/")
        if name in self._names:
            return  # first one wins: callers add specific files before general trees
        self._names.add(name)
        info.name = name
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mtime = 0
        self._archive().addfile(info, io.BytesIO(data) if data is not None else None)

    def __contains__(self, name: str) -> bool:
        return name.strip("/") in self._names

    def add_dir(self, name: str, mode: int = 0o755) -> None:
        info = tarfile.TarInfo(name)
        info.type, info.mode = tarfile.DIRTYPE, mode
        self._add(info)

    def add_bytes(self, name: str, data: bytes, mode: int = 0o644) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(data), mode
        self._add(info, data)

    def add_file(self, name: str, source: Path, mode: int | None = None) -> None:
        """A regular file with the contents (and, unless given, the mode) of `source`."""
        data = source.read_bytes()
        self.add_bytes(name, data, source.stat().st_mode & 0o7777 if mode is None else mode)

    def add_symlink(self, name: str, target: str) -> None:
        info = tarfile.TarInfo(name)
        info.type, info.linkname = tarfile.SYMTYPE, target
        self._add(info)

    def data(self) -> bytes:
        if self._tar is not None:
            self._tar.close()
            self._tar = None
        return self._buffer.getvalue()


def write_image(out: Path, name: str, layer: Layer, config: ImageConfig) -> str:
    """Write an OCI image-layout tar for image `name` (`host/path:tag`); return its digest."""
    if ":" not in name.rsplit("/", 1)[-1]:
        raise ValueError(f"image name {name!r} needs a tag (name:tag)")
    blobs: dict[str, bytes] = {}

    def blob(data: bytes, media_type: str) -> dict[str, Any]:
        digest = hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}

    layer_data = layer.data()
    image_config = {
        "architecture": "amd64",
        "os": "linux",
        "config": config.as_json(),
        "rootfs": {
            "type": "layers",
            "diff_ids": [f"sha256:{hashlib.sha256(layer_data).hexdigest()}"],
        },
        "history": [{"created_by": "devtools/ociimage.py"}],
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": _MANIFEST,
        "config": blob(_json(image_config), _CONFIG),
        "layers": [blob(layer_data, _LAYER)],
    }
    descriptor = blob(_json(manifest), _MANIFEST)
    descriptor["annotations"] = {
        "io.containerd.image.name": name,
        "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1],
    }
    descriptor["platform"] = {"architecture": "amd64", "os": "linux"}
    index = {"schemaVersion": 2, "mediaType": _INDEX, "manifests": [descriptor]}
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    with tarfile.open(partial, "w") as tar:
        _add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        _add_bytes(tar, "index.json", _json(index))
        for digest, data in blobs.items():
            _add_bytes(tar, f"blobs/sha256/{digest}", data)
    partial.replace(out)  # never a half-written archive under the final name
    return str(descriptor["digest"])


def _json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    tar.addfile(info, io.BytesIO(data))
