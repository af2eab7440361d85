"""A real Kubernetes control plane on loopback: etcd and kube-apiserver, no nodes, no Docker.

This is controller-runtime's envtest done from Python (see docs/development.md and
../shared/reference/testcluster.md): the binaries come from `tools/testbin/build.sh`, the
certificates from `devtools/certs.py`, and the flags are envtest's. A plain module, not a
pytest plugin, so `make cluster` (`python -m devtools.controlplane`) and demos reuse it:

    with ControlPlane(find_bin_dir()) as cp:
        cp.kubectl("get", "namespaces")

Failure is fast and says why. Every wait is bounded; a component that exits early, a
port already in use, or an apiserver that never becomes ready raises `ControlPlaneError`
naming the component and carrying the last lines of its log. Components run in their
own process groups, and `stop()` (also called when `start()` fails) kills the groups and
removes the temporary directory, so nothing is left behind.

Errors:

    ControlPlaneError        a component failed to start, died, or never became ready
    TestbinUnavailable       no binaries: Go is missing (callers skip) or the build failed
    CommandFailed            kubectl()/helm() exited non-zero (a CalledProcessError)
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import ctypes
import http.client
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from devtools import certs

__all__ = [
    "BINARIES",
    "OWNER_FILE",
    "WORKDIR_PREFIX",
    "CommandFailed",
    "ControlPlane",
    "ControlPlaneError",
    "TestbinUnavailable",
    "find_bin_dir",
    "free_port",
    "has_default_route",
    "run_build_script",
]

REPO_ROOT = Path(__file__).resolve().parents[1]
BUILD_SCRIPT = REPO_ROOT / "tools" / "testbin" / "build.sh"
BINARIES = ("etcd", "kube-apiserver", "kubectl", "helm")
ENV_TESTBIN = "NODELIMITS_TESTBIN"
"""A directory holding the four binaries; skips running `tools/testbin/build.sh`."""

GO_MISSING_EXIT_CODE = 3
"""What `tools/testbin/build.sh` exits with when `go` is not on PATH."""
GO_HINT = (
    "the e2e tests need kube-apiserver, etcd, kubectl and helm built from source: install Go "
    ">= 1.26 from https://go.dev/dl/ (or your package manager) and put `go` on PATH, then run "
    "tools/testbin/build.sh once (20-35 min on 2 cores, cached afterwards); or set "
    f"{ENV_TESTBIN} to a directory holding {', '.join(BINARIES)}"
)

START_TIMEOUT = 120.0
"""Seconds for etcd and kube-apiserver to become ready: a cold 2-core machine needs ~10-30 s."""
STOP_TIMEOUT = 10.0
"""Seconds between SIGTERM and SIGKILL when stopping a component."""
COMMAND_TIMEOUT = 60.0
"""Default bound on one kubectl/helm invocation."""
LOG_TAIL_LINES = 40


class ControlPlaneError(RuntimeError):
    """A component failed to start, exited, or did not become ready within its bound."""

    def __init__(self, component: str, problem: str, log_tail: str = "") -> None:
        self.component = component
        self.problem = problem
        self.log_tail = log_tail
        text = f"{component}: {problem}"
        if log_tail:
            text += f"\n--- last lines of the {component} log ---\n{log_tail}"
        super().__init__(text)


class TestbinUnavailable(RuntimeError):
    """The binaries cannot be had; `go_missing` tells a skip (no Go) from a real failure."""

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, message: str, *, go_missing: bool) -> None:
        super().__init__(message)
        self.go_missing = go_missing


class CommandFailed(subprocess.CalledProcessError):
    """kubectl or helm exited non-zero; `str()` includes its stderr, unlike the base class."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstderr: {self.stderr}\nstdout: {self.stdout}"


def find_bin_dir(*, build: bool = True, build_timeout: float | None = None) -> Path:
    """Return the directory with the control-plane binaries.

    `$NODELIMITS_TESTBIN` if set (it must hold all four binaries); otherwise the output of
    `tools/testbin/build.sh`, which builds on first use (minutes; progress goes to this
    process's stderr) and only prints the cached directory afterwards. With `build=False`
    the script is not run and `TestbinUnavailable` is raised instead.
    """
    configured = os.environ.get(ENV_TESTBIN)
    if configured:
        bin_dir = Path(configured)
        missing = [name for name in BINARIES if not os.access(bin_dir / name, os.X_OK)]
        if missing:
            raise TestbinUnavailable(
                f"${ENV_TESTBIN}={bin_dir} lacks executable {', '.join(missing)}; "
                "unset it to use tools/testbin/build.sh",
                go_missing=False,
            )
        return bin_dir
    if not build:
        raise TestbinUnavailable(f"${ENV_TESTBIN} is not set", go_missing=False)
    return run_build_script(BUILD_SCRIPT, GO_HINT, build_timeout)


def run_build_script(
    script: Path, go_hint: str, build_timeout: float | None = None, *args: str
) -> Path:
    """Run a tools/*/build.sh (with ``args``) that builds from the Go module proxy into a
    cache (at once when cached) and prints its result's path last; its progress goes to
    this process's stderr. Raises :class:`TestbinUnavailable` (``go_missing``: exit 3,
    said with ``go_hint``)."""
    try:
        result = subprocess.run(
            ["bash", str(script), *args],
            stdout=subprocess.PIPE,
            text=True,
            timeout=build_timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise TestbinUnavailable(
            f"{script} did not finish within {build_timeout} s", go_missing=False
        ) from exc
    if result.returncode == GO_MISSING_EXIT_CODE:
        raise TestbinUnavailable(f"Go is not installed: {go_hint}", go_missing=True)
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise TestbinUnavailable(
            f"{' '.join([str(script), *args])} failed with exit code {result.returncode}"
            " (its log is above)",
            go_missing=False,
        )
    return Path(lines[-1])


def has_default_route(route_table: Path = Path("/proc/net/route")) -> bool:
    """True if the host has an IPv4 default route (Destination 00000000 in /proc/net/route).

    Without one, kube-apiserver finds no address to advertise, so the control plane must
    pass `--advertise-address=127.0.0.1 --endpoint-reconciler-type=none`. Where the table
    cannot be read, assume a default route (the common case).
    """
    try:
        rows = route_table.read_text().splitlines()[1:]
    except OSError:
        return True
    return any(len(fields) > 1 and fields[1] == "00000000" for fields in map(str.split, rows))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _Component:
    """One child process in its own process group, with its output in a log file."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, env: Mapping[str, str]):
        self.name = name
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env),
                start_new_session=True,  # its own process group: stop() kills grandchildren too
                preexec_fn=_die_with_parent_hook(),
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def exited(self) -> bool:
        return self.process.poll() is not None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM the group, SIGKILL it after `timeout`, and reap the process."""
        if self.process.poll() is None:
            _signal_group(self.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)
        # Whether or not the leader is gone, grandchildren in the group may not be.
        _signal_group(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


_PR_SET_PDEATHSIG = 1


def _die_with_parent_hook() -> Callable[[], None] | None:
    """On Linux, a preexec hook making the child get SIGKILL if this process dies.

    Covers what `stop()` cannot: the test runner itself being SIGKILLed. The kernel ties
    the signal to the *thread* that forked, so it is used only from the main thread.
    """
    if sys.platform != "linux" or threading.current_thread() is not threading.main_thread():
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    prctl = libc.prctl

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

    return hook


_RUNNING: weakref.WeakSet[ControlPlane] = weakref.WeakSet()

WORKDIR_PREFIX = "nodelimits-cp-"
OWNER_FILE = "owner.pid"


def _remove_orphaned_workdirs() -> None:
    """Remove work directories left by a runner that was SIGKILLed (its components died
    with it, see `_die_with_parent_hook`, but nobody removed the directory)."""
    for workdir in Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*"):
        try:
            owner = int((workdir / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue  # not ours, or being created right now
        if owner != os.getpid() and not _alive(owner):
            shutil.rmtree(workdir, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


@atexit.register
def _stop_leftovers() -> None:
    for plane in list(_RUNNING):
        plane.stop()


class ControlPlane:
    """etcd plus kube-apiserver on free loopback ports, with an admin kubeconfig.

    Construct, then `start()` (or use `with`); `stop()` is idempotent. Ports default to
    free ones; pass `etcd_port` / `apiserver_port` to pin them. The real node
    (devtools/realnode.py) binds the apiserver to its bridge address (`host`, with
    `serving_hosts` as extra subjectAltNames), authorizes with `Node,RBAC` and admits
    service accounts; the defaults are envtest's. Attributes are set by
    `start()`: `workdir` (removed again by `stop()`), `kubeconfig`, `url`, `ca_file`,
    `admin_cert_file`, `admin_key_file`, `etcd_url`, and `startup_seconds`.
    """

    def __init__(
        self,
        bin_dir: Path,
        *,
        start_timeout: float = START_TIMEOUT,
        stop_timeout: float = STOP_TIMEOUT,
        etcd_port: int | None = None,
        apiserver_port: int | None = None,
        extra_apiserver_args: Sequence[str] = (),
        host: str = "127.0.0.1",
        serving_hosts: Sequence[str] = (),
        authorization_mode: str = "RBAC",
        admission_plugins: Sequence[str] = (),
        service_cidr: str = "10.0.0.0/24",
    ) -> None:
        self.bin_dir = Path(bin_dir)
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.etcd_port = etcd_port
        self.apiserver_port = apiserver_port
        self.extra_apiserver_args = tuple(extra_apiserver_args)
        self.host = host
        self.serving_hosts = tuple(serving_hosts)
        self.authorization_mode = authorization_mode
        self.admission_plugins = tuple(admission_plugins)
        self.service_cidr = service_cidr
        self.workdir: Path | None = None
        self.startup_seconds: float | None = None
        self._etcd: _Component | None = None
        self._apiserver: _Component | None = None

    # -- paths, valid once start() has created the work directory ------------------------

    @property
    def _dir(self) -> Path:
        if self.workdir is None:
            raise RuntimeError("the control plane has not been started")
        return self.workdir

    @property
    def kubeconfig(self) -> Path:
        return self._dir / "kubeconfig"

    @property
    def ca_file(self) -> Path:
        """The CA that signed the apiserver's serving certificate."""
        return self._dir / "pki" / "serving-ca.crt"

    @property
    def admin_cert_file(self) -> Path:
        """Client certificate of user `admin` in group `system:masters`."""
        return self._dir / "pki" / "admin.crt"

    @property
    def admin_key_file(self) -> Path:
        return self._dir / "pki" / "admin.key"

    @property
    def client_ca_file(self) -> Path:
        """The CA (bundle) the apiserver trusts for client certificates."""
        return self._dir / "pki" / "admin-ca.crt"

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.apiserver_port}"

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.etcd_port}"

    @property
    def running(self) -> bool:
        return self._apiserver is not None and not self._apiserver.exited()

    def pids(self) -> list[int]:
        """Process ids of the components started so far (for checks that nothing is left)."""
        return [c.pid for c in (self._etcd, self._apiserver) if c is not None]

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> ControlPlane:
        """Start etcd, then kube-apiserver; return once /readyz answers ok.

        Raises `ControlPlaneError` (after stopping whatever did start) if a binary is
        missing, a component exits, or readiness does not come within `start_timeout`.
        """
        if self.workdir is not None:
            raise RuntimeError("a ControlPlane can be started once; create a new one")
        began = time.monotonic()
        deadline = began + self.start_timeout
        _remove_orphaned_workdirs()
        self.workdir = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
        (self.workdir / OWNER_FILE).write_text(str(os.getpid()))
        _RUNNING.add(self)
        try:
            for name in ("etcd", "kube-apiserver"):
                if not os.access(self.bin_dir / name, os.X_OK):
                    raise ControlPlaneError(name, f"no executable {self.bin_dir / name}")
            self._write_certificates()
            self._start_etcd(deadline)
            self._start_apiserver(deadline)
            self._write_kubeconfig()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Stop kube-apiserver, then etcd (SIGTERM, SIGKILL after a bound); remove workdir."""
        for component in (self._apiserver, self._etcd):
            if component is not None:
                component.stop(self.stop_timeout)
        _RUNNING.discard(self)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def log_tail(self, component: str = "kube-apiserver", lines: int = LOG_TAIL_LINES) -> str:
        """The last `lines` lines of a component's log ("etcd" or "kube-apiserver")."""
        proc = {"etcd": self._etcd, "kube-apiserver": self._apiserver}[component]
        return proc.log_tail(lines) if proc is not None else ""

    # -- clients ---------------------------------------------------------------------------

    def kubernetes_settings(self, **more: Any) -> dict[str, Any]:
        """nodelimits settings that read this apiserver as its admin (the claims a pod names,
        the training runtime a TrainJob names): ``{"kubernetes": {...}}``, ``more`` over it."""
        return {
            "kubernetes": {
                "api_url": self.url,
                "ca_file": str(self.ca_file),
                "client_cert_file": str(self.admin_cert_file),
                "client_key_file": str(self.admin_key_file),
                **more,
            }
        }

    def env(self) -> dict[str, str]:
        """The environment for kubectl/helm: KUBECONFIG, and caches kept inside workdir."""
        env = dict(os.environ)
        env.update(
            KUBECONFIG=str(self.kubeconfig),
            KUBECACHEDIR=str(self._dir / "kube-cache"),
            HELM_CACHE_HOME=str(self._dir / "helm" / "cache"),
            HELM_CONFIG_HOME=str(self._dir / "helm" / "config"),
            HELM_DATA_HOME=str(self._dir / "helm" / "data"),
        )
        return env

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = COMMAND_TIMEOUT,
    ) -> subprocess.CompletedProcess[str]:
        """Run the built kubectl against this control plane; raise `CommandFailed` if asked."""
        return self._run("kubectl", args, input=input, check=check, timeout=timeout)

    def helm(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = COMMAND_TIMEOUT,
    ) -> subprocess.CompletedProcess[str]:
        """Run the built helm against this control plane; raise `CommandFailed` if asked."""
        return self._run("helm", args, input=input, check=check, timeout=timeout)

    def _run(
        self, tool: str, args: Sequence[str], *, input: str | None, check: bool, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(self.bin_dir / tool), *args]
        result = subprocess.run(
            argv, input=input, capture_output=True, text=True, env=self.env(), timeout=timeout
        )
        if check and result.returncode != 0:
            raise CommandFailed(result.returncode, argv, result.stdout, result.stderr)
        return result

    # -- start-up steps --------------------------------------------------------------------

    def _write_certificates(self) -> None:
        pki = self._dir / "pki"
        hosts = dict.fromkeys((self.host, "127.0.0.1", "localhost", *self.serving_hosts))
        certs.make_ca_and_cert(pki, tuple(hosts), name="serving")
        certs.make_client_ca_and_cert(
            pki, common_name="admin", organizations=("system:masters",), name="admin"
        )
        certs.make_service_account_keys(pki, name="sa")

    def _start_etcd(self, deadline: float) -> None:
        self.etcd_port = self.etcd_port or free_port()
        peer = f"http://127.0.0.1:{free_port()}"
        argv = [
            str(self.bin_dir / "etcd"),
            f"--data-dir={self._dir / 'etcd'}",
            f"--listen-client-urls={self.etcd_url}",
            f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}",
            "--unsafe-no-fsync=true",  # throwaway data: fsync only slows tests down
            "--log-level=warn",
        ]
        self._etcd = _Component("etcd", argv, self._dir / "etcd.log", os.environ)

        def etcd_healthy() -> tuple[bool, str]:
            status, body = _get(f"127.0.0.1:{self.etcd_port}", "/health")
            return status == 200 and '"true"' in body, f"HTTP {status}: {body.strip()}"

        self._wait(self._etcd, etcd_healthy, self.etcd_port, deadline)

    def _start_apiserver(self, deadline: float) -> None:
        self.apiserver_port = self.apiserver_port or free_port()
        pki = self._dir / "pki"
        argv = [
            str(self.bin_dir / "kube-apiserver"),
            f"--etcd-servers={self.etcd_url}",
            f"--bind-address={self.host}",
            f"--secure-port={self.apiserver_port}",
            f"--cert-dir={pki}",
            f"--tls-cert-file={pki / 'serving.crt'}",
            f"--tls-private-key-file={pki / 'serving.key'}",
            f"--client-ca-file={self.client_ca_file}",
            f"--service-account-issuer={self.url}/",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={self.service_cidr}",
            f"--authorization-mode={self.authorization_mode}",
            "--allow-privileged=true",
            "--profiling=false",
        ]
        if self.admission_plugins:
            argv.append(f"--enable-admission-plugins={','.join(self.admission_plugins)}")
        else:  # no controllers make the tokens, so pods must not ask for them
            argv.append("--disable-admission-plugins=ServiceAccount")
        if self.host != "127.0.0.1":
            argv.append(f"--advertise-address={self.host}")
        elif not has_default_route():
            # A loopback advertise address is rejected unless nothing reconciles endpoints.
            argv += ["--advertise-address=127.0.0.1", "--endpoint-reconciler-type=none"]
        argv += self.extra_apiserver_args
        log = self._dir / "kube-apiserver.log"
        self._apiserver = _Component("kube-apiserver", argv, log, os.environ)
        context = self._client_ssl_context()

        def apiserver_ready() -> tuple[bool, str]:
            status, body = _get(f"{self.host}:{self.apiserver_port}", "/readyz", context)
            return status == 200, f"HTTP {status}: {body.strip()}"

        self._wait(self._apiserver, apiserver_ready, self.apiserver_port, deadline)

    def _client_ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.load_cert_chain(str(self.admin_cert_file), str(self.admin_key_file))
        return context

    def _wait(
        self,
        component: _Component,
        probe: Callable[[], tuple[bool, str]],
        port: int | None,
        deadline: float,
    ) -> None:
        """Poll `probe` until it passes; fail fast if the process exits, bounded by deadline."""
        last = "no answer yet"
        while True:
            if component.exited():
                raise self._exited_error(component, port)
            try:
                ok, last = probe()
            except (OSError, http.client.HTTPException) as exc:
                ok, last = False, f"{type(exc).__name__}: {exc}"
            if ok:
                return
            if time.monotonic() >= deadline:
                raise ControlPlaneError(
                    component.name,
                    f"not ready within {self.start_timeout:g} s "
                    f"(pid {component.pid}, port {port}); last probe: {last}",
                    component.log_tail(),
                )
            time.sleep(0.25)

    def _exited_error(self, component: _Component, port: int | None) -> ControlPlaneError:
        code = component.process.returncode
        tail = component.log_tail()
        problem = f"exited with code {code} during start-up"
        if "address already in use" in tail:
            problem += f"; a port it needs is already in use (its port: {port})"
        return ControlPlaneError(component.name, problem, tail)

    def _write_kubeconfig(self) -> None:
        def b64(path: Path) -> str:
            return base64.b64encode(path.read_bytes()).decode()

        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "nodelimits-test",
                    "cluster": {
                        "server": self.url,
                        "certificate-authority-data": b64(self.ca_file),
                    },
                }
            ],
            "users": [
                {
                    "name": "admin",
                    "user": {
                        "client-certificate-data": b64(self.admin_cert_file),
                        "client-key-data": b64(self.admin_key_file),
                    },
                }
            ],
            "contexts": [
                {
                    "name": "nodelimits-test",
                    "context": {"cluster": "nodelimits-test", "user": "admin"},
                }
            ],
            "current-context": "nodelimits-test",
        }
        self.kubeconfig.touch(mode=0o600)
        self.kubeconfig.write_text(yaml.safe_dump(config, sort_keys=False))


def _get(
    hostport: str, path: str, context: ssl.SSLContext | None = None, timeout: float = 5.0
) -> tuple[int, str]:
    """One GET over HTTP(S); returns (status, body). Raises OSError when nothing listens."""
    conn: http.client.HTTPConnection
    if context is None:
        conn = http.client.HTTPConnection(hostport, timeout=timeout)
    else:
        conn = http.client.HTTPSConnection(hostport, timeout=timeout, context=context)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read(4096).decode(errors="replace")
    finally:
        conn.close()


# -- `python -m devtools.controlplane` (`make cluster`) ------------------------------------


class _Stop(Exception):
    """Raised from the SIGINT/SIGTERM handler to unwind into `stop()`."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.controlplane",
        description="Run etcd + kube-apiserver on loopback until Ctrl-C (or SIGTERM).",
    )
    parser.add_argument(
        "--bin-dir",
        type=Path,
        help=f"directory with the binaries (default: ${ENV_TESTBIN}, else tools/testbin/build.sh)",
    )
    parser.add_argument(
        "--port", type=int, help="kube-apiserver port on 127.0.0.1 (default: a free one)"
    )
    parser.add_argument(
        "--start-timeout", type=float, default=START_TIMEOUT, help="seconds (default: %(default)s)"
    )
    args = parser.parse_args(argv)

    def on_signal(signum: int, frame: object) -> None:
        # Once is enough: ignore further signals so a second Ctrl-C cannot cut stop() short
        # (it is bounded by the stop timeout anyway).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise _Stop

    # SIGINT explicitly too: a shell starts background jobs with SIGINT ignored, and Python
    # then installs no KeyboardInterrupt handler.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        return _serve(args.bin_dir, args.port, args.start_timeout)
    except _Stop:
        print("\nstopped; processes ended and temporary files removed.", file=sys.stderr)
        return 0


def _serve(bin_dir: Path | None, port: int | None, start_timeout: float) -> int:
    try:
        bin_dir = bin_dir or find_bin_dir()
    except TestbinUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"starting etcd and kube-apiserver from {bin_dir} ...", file=sys.stderr)
    try:
        with ControlPlane(bin_dir, start_timeout=start_timeout, apiserver_port=port) as plane:
            version = plane.kubectl("version", "-o", "yaml").stdout
            server = yaml.safe_load(version).get("serverVersion", {}).get("gitVersion", "?")
            print(
                f"control plane ready in {plane.startup_seconds:.1f} s: {plane.url} "
                f"(kube-apiserver {server})\n"
                f"kubeconfig: {plane.kubeconfig}\n\n"
                f"  export KUBECONFIG={plane.kubeconfig}\n"
                f"  export PATH={bin_dir}:$PATH   # kubectl and helm of the same version\n\n"
                f"logs: {plane.workdir}/{{etcd,kube-apiserver}}.log\n"
                f"stop with Ctrl-C (or kill {os.getpid()}); the directory is then removed.",
                flush=True,
            )
            component = _wait_for_exit(plane)
            print(
                f"error: {component} exited unexpectedly; last log lines:\n"
                f"{plane.log_tail(component)}",
                file=sys.stderr,
            )
            return 1
    except ControlPlaneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _wait_for_exit(plane: ControlPlane) -> str:
    """Block while both components run; return the name of the first one that exits."""
    while True:
        for name, component in (("etcd", plane._etcd), ("kube-apiserver", plane._apiserver)):
            if component is not None and component.exited():
                return name
        time.sleep(1)


if __name__ == "__main__":
    sys.exit(main())
