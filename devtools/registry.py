"""A real OCI registry on loopback: Debian's ``docker-registry`` (the CNCF distribution
registry, v2 API), plain HTTP on 127.0.0.1, its storage in a temporary directory.

podman pushes to it with ``--tls-verify=false`` and helm with ``--plain-http``; both are
needed only because it listens without TLS, on loopback. Used by ``make release`` and by
tests/release (the round trip: push, pull back, ``helm install oci://``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from devtools.controlplane import free_port
from devtools.image import ImageUnavailable

START_TIMEOUT = 20.0


class Registry:
    """``with Registry() as reg:`` -> ``reg.host`` is ``127.0.0.1:PORT``."""

    def __init__(self, port: int | None = None, workdir: Path | None = None) -> None:
        self.port = port or free_port()
        self.host = f"127.0.0.1:{self.port}"
        self._own = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="nodelimits-registry-"))
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.workdir / "registry.log"

    def start(self) -> Registry:
        binary = shutil.which("docker-registry")
        if binary is None:
            raise ImageUnavailable(
                "docker-registry not found: run tools/image/deps.sh as root "
                "(apt-get install docker-registry)",
                missing=True,
            )
        config = {
            "version": 0.1,
            "log": {"level": "info", "fields": {"service": "registry"}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.workdir / "data")},
                "delete": {"enabled": True},
            },
            "http": {"addr": self.host, "headers": {"X-Content-Type-Options": ["nosniff"]}},
        }
        self.workdir.mkdir(parents=True, exist_ok=True)
        path = self.workdir / "config.yml"
        path.write_text(yaml.safe_dump(config))
        with self.log.open("wb") as out:
            self._proc = subprocess.Popen(
                [binary, "serve", str(path)],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ImageUnavailable(
                    f"docker-registry exited ({self._proc.returncode}): {self.tail()}",
                    missing=False,
                )
            try:
                with urllib.request.urlopen(f"http://{self.host}/v2/", timeout=2):
                    return self
            except (OSError, urllib.error.URLError):
                time.sleep(0.2)
        self.stop()
        raise ImageUnavailable(f"docker-registry not up in {START_TIMEOUT:.0f} s", missing=False)

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def get(self, path: str, accept: str = "") -> Any:
        req = urllib.request.Request(f"http://{self.host}/v2/{path}")
        if accept:
            req.add_header("Accept", accept)
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback
            return json.loads(resp.read())

    def tags(self, repository: str) -> list[str]:
        return list(self.get(f"{repository}/tags/list").get("tags") or [])

    def manifest(self, repository: str, reference: str) -> dict[str, Any]:
        accept = ", ".join(
            (
                "application/vnd.oci.image.manifest.v1+json",
                "application/vnd.oci.image.index.v1+json",
                "application/vnd.docker.distribution.manifest.v2+json",
            )
        )
        result: dict[str, Any] = self.get(f"{repository}/manifests/{reference}", accept)
        return result

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._own:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Registry:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
