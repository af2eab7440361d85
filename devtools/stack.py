"""nodelimits wired to a real control plane: simulator + ``nodelimits serve`` + the chart's
webhook configuration, all on loopback. Used by the e2e tests and by ``make demo``.

The webhook configuration is rendered from ``charts/nodelimits`` with ``webhook.url``
pointing at the local server, so the e2e tests exercise the very paths, rules and
matchConditions that platform teams install.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from devtools.certs import make_ca_and_cert
from devtools.controlplane import ControlPlane, free_port

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "nodelimits"
EXAMPLE_LIMITS = ROOT / "examples" / "limits.yaml"
START_TIMEOUT = 60.0
RELEASE = "nodelimits"
RELEASE_NAMESPACE = "nodelimits-system"
SIM_ACCOUNT = {"accessKey": "sim-ak", "secretKey": "sim-sk", "user": "sim"}


class StackError(RuntimeError):
    """A component of the stack failed to start; the message carries its log tail."""


class Process:
    def __init__(self, name: str, argv: list[str], log: Path, env: Mapping[str, str]) -> None:
        self.name, self.log = name, log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env=dict(env), start_new_session=True
            )

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        return self.proc.returncode


def wait_until(what: str, check: Any, process: Process, timeout: float = START_TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.alive():
            raise StackError(f"{what}: {process.name} exited\n{process.tail()}")
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise StackError(f"{what}: not ready after {timeout:.0f}s\n{process.tail()}")


def _http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback http
            return int(resp.status)
    except OSError as exc:
        return int(getattr(exc, "code", 0) or 0)


class SimulatorProcess:
    """``nodelimits simulate`` as a subprocess, with its admin endpoint."""

    def __init__(self, workdir: Path, config: Mapping[str, Any] | None = None) -> None:
        self.workdir = workdir
        self.config = dict(config or _default_sim_config())
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: Process | None = None

    def start(self) -> SimulatorProcess:
        path = self.workdir / "simulator.yaml"
        path.write_text(yaml.safe_dump(self.config))
        argv = [
            sys.executable,
            "-m",
            "webhook",
            "simulate",
            "--config",
            str(path),
            "--port",
            str(self.port),
        ]
        self._process = Process("simulator", argv, self.workdir / "simulator.log", os.environ)
        wait_until(
            "simulator",
            lambda: "listening on" in self._process.tail() if self._process else False,
            self._process,
        )
        return self

    def stop(self) -> None:
        if self._process:
            self._process.stop()

    def platform_config(self, workdir: Path) -> dict[str, Any]:
        """The ``platform`` settings of a nodelimits process that talks to this simulator
        with its AK/SK account, the credentials written under ``workdir/credentials``."""
        secrets_dir = workdir / "credentials"
        secrets_dir.mkdir(exist_ok=True)
        for name, value in SIM_ACCOUNT.items():
            (secrets_dir / name).write_text(value)
        return {
            "base_url": self.url,
            "center_url": self.url,
            "aksk_url": self.url,
            "token_source": "aksk",
            "secret_dir": str(secrets_dir),
            "cluster_id": "11112",
        }

    def admin(self, method: str, path: str, payload: object = None) -> Any:
        data = json.dumps(payload).encode() if payload is not None else None
        req = urllib.request.Request(  # noqa: S310 - loopback http
            f"{self.url}/_simulator/{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310
            body = resp.read()
        return json.loads(body) if body else None

    def inject(self, **fault: Any) -> None:
        self.admin("POST", "faults", fault)

    def clear_faults(self) -> None:
        self.admin("DELETE", "faults")

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self.admin("GET", "stats")
        return result


def _default_sim_config() -> dict[str, Any]:
    limits = yaml.safe_load(EXAMPLE_LIMITS.read_text())
    return {"resourceGroups": limits["resourceGroups"]}


class Webhook:
    """``nodelimits serve`` as a subprocess against a control plane and a simulator."""

    def __init__(
        self,
        workdir: Path,
        plane: ControlPlane,
        simulator: SimulatorProcess,
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        self.workdir, self.plane, self.simulator = workdir, plane, simulator
        self.certs = make_ca_and_cert(workdir / "tls")
        self.port = free_port()
        self.metrics_port = free_port()
        self.settings = settings or {}
        self._process: Process | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}"

    def config(self) -> dict[str, Any]:
        base: dict[str, Any] = {
            "log_format": "json",
            "platform": self.simulator.platform_config(self.workdir),
            "server": {
                "host": "127.0.0.1",
                "port": self.port,
                "metrics_host": "127.0.0.1",
                "metrics_port": self.metrics_port,
                "cert_file": str(self.certs.cert),
                "key_file": str(self.certs.key),
                "shutdown_delay": 0,
                "cert_check_interval": 1,
            },
        }
        return _merge(base, self.settings)

    def start(self) -> Webhook:
        path = self.workdir / "config.yaml"
        path.write_text(yaml.safe_dump(self.config()))
        env = self.plane.env()
        env["NODELIMITS_CONFIG_FILE"] = str(path)
        argv = [sys.executable, "-m", "webhook", "serve"]
        self._process = Process("nodelimits serve", argv, self.workdir / "serve.log", env)
        wait_until(
            "nodelimits serve",
            lambda: _http_status(f"{self.metrics_url}/readyz") == 200,
            self._process,
        )
        return self

    def stop(self) -> int | None:
        return self._process.stop() if self._process else None

    @property
    def process(self) -> subprocess.Popen[bytes]:
        assert self._process is not None
        return self._process.proc

    def log_lines(self) -> list[str]:
        return self._process.log.read_text(errors="replace").splitlines() if self._process else []

    def decisions(self) -> list[dict[str, Any]]:
        """The structured decision lines the server logged so far."""
        out: list[dict[str, Any]] = []
        for line in self.log_lines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict) and "decision" in record:
                    out.append(record["decision"])
        return out

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"{self.metrics_url}/metrics", timeout=5) as resp:  # noqa: S310
            return str(resp.read().decode())

    def render_configuration(self, values: Mapping[str, Any] | None = None) -> str:
        """The chart's ValidatingWebhookConfiguration, pointed at this server."""
        return render_configuration(self.plane, self.url, self.certs.ca.read_bytes(), values)

    def register(self, values: Mapping[str, Any] | None = None) -> None:
        """Apply the chart's webhook configuration and wait until the apiserver uses it."""
        self.plane.kubectl("apply", "-f", "-", input=self.render_configuration(values))
        probe = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "nodelimits-probe",
                "namespace": "default",
                "annotations": {"nodelimits.io/resource-group": "TeslaM40"},
            },
            "spec": {
                "containers": [
                    {"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "999"}}}
                ]
            },
        }
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            result = self.plane.kubectl(
                "create", "--dry-run=server", "-f", "-", input=json.dumps(probe), check=False
            )
            if "nodelimits:" in result.stderr:
                return
            time.sleep(0.3)
        raise StackError(
            f"webhook configuration never took effect\n{self._process and self._process.tail()}"
        )

    def unregister(self) -> None:
        self.plane.kubectl(
            "delete",
            "validatingwebhookconfiguration",
            "-l",
            f"app.kubernetes.io/instance={RELEASE}",
            "--ignore-not-found",
            check=False,
        )


def render_configuration(
    plane: ControlPlane, url: str, ca_pem: bytes, values: Mapping[str, Any] | None = None
) -> str:
    """The chart's ValidatingWebhookConfiguration (release ``nodelimits``) pointed at ``url``,
    trusting ``ca_pem``: the rules and matchConditions platform teams install, for any
    server behind them (the benchmarks register kopf no-op with it too)."""
    ca = base64.b64encode(ca_pem).decode()
    args = [
        "template",
        RELEASE,
        str(CHART),
        "--namespace",
        RELEASE_NAMESPACE,
        "--set",
        f"webhook.url={url}",
        "--set",
        f"webhook.caBundle={ca}",
        "--show-only",
        "templates/webhook.yaml",
    ]
    for key, value in (values or {}).items():
        args += ["--set-json", f"{key}={json.dumps(value)}"]
    return str(plane.helm(*args).stdout)


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


@contextlib.contextmanager
def running_stack(
    plane: ControlPlane,
    settings: Mapping[str, Any] | None = None,
    sim_config: Mapping[str, Any] | None = None,
    workdir: Path | None = None,
) -> Iterator[tuple[SimulatorProcess, Webhook]]:
    """The simulator and the webhook processes, registered; stopped and unregistered on exit."""
    own = workdir is None
    work = workdir or Path(tempfile.mkdtemp(prefix="nodelimits-stack-"))
    simulator = SimulatorProcess(work, sim_config).start()
    webhook: Webhook | None = None
    try:
        webhook = Webhook(work, plane, simulator, settings).start()
        webhook.register()
        yield simulator, webhook
    finally:
        if webhook is not None:
            webhook.unregister()
            webhook.stop()
        simulator.stop()
        if own:
            shutil.rmtree(work, ignore_errors=True)
