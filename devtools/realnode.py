"""A real single-node Kubernetes cluster inside this machine: pods run, the scheduler says no.

etcd and kube-apiserver (devtools/controlplane.py, bound to the bridge address, Node+RBAC
authorization, service accounts), kube-controller-manager, kube-scheduler, containerd
(Debian's, with runc and the CNI plugins), the kubelet and kube-proxy (iptables mode),
all built by `tools/testbin/build.sh --node`. The recipe and the blockers of these
machines are in ../shared/reference/realnode/ and docs/development.md ("The real node").

    with RealNode(find_node_bin_dir(), images=[...]) as node:
        node.kubectl("get", "nodes")

Network: the bridge `nlk0` holds the node address; pods get addresses from a /24 on it
and a route to the Service range through it, no default route; a guard table drops
anything forwarded between the bridge and another interface. Nothing listens outside
loopback and the bridge.

The node advertises `nvidia.com/gpu`, `hygon.com/dcu` and `cambricon.com/mlu370` (a
status patch, as a device plugin would) and reserves memory so that what pods can have is
a round figure: `node_group()` is a limits entry describing exactly this node.

One per machine: a file lock is held from `start()` to `stop()`; a second user waits.
`stop()` undoes everything: processes by PID (and the containerd shims of this run's
socket), mounts, the bridge, iptables chains and nft tables the components made,
sysctls, cgroups and the directories they created. What the machine looked like before
is written to the run directory first, so a run killed with SIGKILL is cleaned up by the
next `start()`. `python -m devtools.realnode` (`make cluster-node`) runs one until Ctrl-C.

Errors: `RealNodeError` (a step failed: says which, with the component's log tail);
`RealNodeUnavailable` (not root, or a Debian package is missing: callers skip or fail).
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import contextlib
import fcntl
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, ClassVar

import yaml

from devtools import certs, hoststate, nodeimages
from devtools.controlplane import (
    BUILD_SCRIPT,
    ENV_TESTBIN,
    CommandFailed,
    ControlPlane,
    ControlPlaneError,
    TestbinUnavailable,
    _Component,
    run_build_script,
)

__all__ = [
    "EXTENDED_RESOURCES",
    "NODE_BINARIES",
    "NODE_NAME",
    "NodeNetwork",
    "RealNode",
    "RealNodeError",
    "RealNodeUnavailable",
    "find_node_bin_dir",
    "prerequisites_missing",
]

NODE_NAME = "nodelimits-node"
NODE_BINARIES = ("kubelet", "kube-scheduler", "kube-controller-manager", "kube-proxy")
HOST_TOOLS = {
    "containerd": "containerd",
    "containerd-shim-runc-v2": "containerd",
    "ctr": "containerd",
    "runc": "runc",
    "iptables": "iptables",
    "nft": "nftables",
    "conntrack": "conntrack",
    "busybox": "busybox-static",
}
"""Programs the node needs on PATH, and the Debian package of each (.ci/run installs them)."""
CNI_BIN_DIR = Path("/usr/lib/cni")
CNI_PACKAGE = "containernetworking-plugins"

RUN_DIR = Path("/tmp/nodelimits-node")
"""Everything the components write, except what they hard-code (see hoststate.WATCHED_DIRS)."""
LOCK_FILE = Path("/tmp/nodelimits-node.lock")
IMAGE_CACHE = (
    Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "nodelimits" / "images"
)

EXTENDED_RESOURCES = {"nvidia.com/gpu": 2, "hygon.com/dcu": 4, "cambricon.com/mlu370": 8}
"""Cards the node advertises: as many as one node of TeslaM40, kshdtest and mlu370pool."""
RESERVED_MEMORY_MIB = 2048
"""At least this much memory is kept from pods (system reserved plus the eviction margin)."""
EVICTION_MEMORY_MIB = 100

START_TIMEOUT = 180.0
STOP_TIMEOUT = 10.0
IMPORT_TIMEOUT = 300.0
SLOW_PHASE = 1.0
"""Teardown phases slower than this many seconds are logged."""
CONTAINERD_TMPFS_MIB = 4096
"""A cap on containerd's root and state (a tmpfs takes only what it holds)."""
LOCK_TIMEOUT = 1800.0
"""Seconds to wait for another run's node (a whole test session may hold it)."""

_PORTS = {
    "kubelet": 20250,
    "kubelet-healthz": 20248,
    "kube-controller-manager": 20257,
    "kube-scheduler": 20259,
    "kube-proxy-healthz": 20256,
    "kube-proxy-metrics": 20249,
}


@dataclass(frozen=True, slots=True)
class NodeNetwork:
    """The private network inside the machine: a bridge, its pods, the Service range."""

    bridge: str = "nlk0"
    node_ip: str = "10.213.0.1"
    pod_cidr: str = "10.213.0.0/24"
    service_cidr: str = "10.213.1.0/24"
    kubernetes_service_ip: str = "10.213.1.1"


class RealNodeError(RuntimeError):
    """A step of start-up failed; the message names it and carries the relevant log tail."""


class RealNodeUnavailable(RuntimeError):
    """The node cannot run here at all: not root, or programs missing (which packages)."""


def prerequisites_missing() -> list[str]:
    """What this machine lacks for a real node, one line each; [] when nothing."""
    problems = []
    if os.geteuid() != 0:
        problems.append("must run as root (the node creates a bridge, mounts and cgroups)")
    packages = sorted({pkg for tool, pkg in HOST_TOOLS.items() if shutil.which(tool) is None})
    if not (CNI_BIN_DIR / "bridge").exists():
        packages.append(CNI_PACKAGE)
    if packages:
        problems.append(f"missing Debian packages: apt-get install {' '.join(packages)}")
    return problems


def find_node_bin_dir(*, build: bool = True) -> Path:
    """The testbin directory holding the control-plane and the node binaries.

    Like `controlplane.find_bin_dir`, with `build.sh --node`: the first call builds the
    node binaries too (about 2 minutes after the control-plane build, which shares its
    Go build cache).
    """
    configured = os.environ.get(ENV_TESTBIN)
    if configured:
        bin_dir = Path(configured)
        missing = [n for n in NODE_BINARIES if not os.access(bin_dir / n, os.X_OK)]
        if missing:
            raise TestbinUnavailable(
                f"${ENV_TESTBIN}={bin_dir} lacks {', '.join(missing)}", go_missing=False
            )
        return bin_dir
    if not build:
        raise TestbinUnavailable(f"${ENV_TESTBIN} is not set", go_missing=False)
    return run_build_script(BUILD_SCRIPT, "see tools/testbin/build.sh", None, "--node")


class _NodeControlPlane(ControlPlane):
    """The control plane as a node needs it: a client CA bundle for every component."""

    CLIENTS: ClassVar[dict[str, tuple[str, tuple[str, ...]]]] = {
        # file name: (user, groups)
        "kubelet": (f"system:node:{NODE_NAME}", ("system:nodes",)),
        "controller-manager": ("system:kube-controller-manager", ()),
        "scheduler": ("system:kube-scheduler", ()),
        "kube-proxy": ("system:kube-proxy", ()),
        "apiserver-kubelet-client": ("kube-apiserver-kubelet-client", ("system:masters",)),
    }

    @property
    def client_ca_file(self) -> Path:
        return self._dir / "pki" / "client-ca-bundle.crt"

    def _write_certificates(self) -> None:
        super()._write_certificates()
        pki = self._dir / "pki"
        bundle = [(pki / "admin-ca.crt").read_bytes()]
        for name, (user, groups) in self.CLIENTS.items():
            paths = certs.make_client_ca_and_cert(
                pki, common_name=user, organizations=groups, name=name
            )
            bundle.append(paths.ca_pem)
        self.client_ca_file.write_bytes(b"".join(bundle))
        # the kubelet's serving certificate, for the apiserver's logs/exec/port-forward
        certs.make_ca_and_cert(pki, (self.host, NODE_NAME), name="kubelet-serving")
        # flags naming these files: known only now that start() has made the directory
        self.extra_apiserver_args = (
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            f"--kubelet-certificate-authority={pki / 'kubelet-serving-ca.crt'}",
            "--kubelet-preferred-address-types=InternalIP",
            *self.extra_apiserver_args,
        )


class RealNode:
    """The cluster: construct, `start()` (or `with`), use `kubectl()`/`helm()`, `stop()`.

    `images`: OCI archives imported into containerd before the kubelet starts (pods use
    `imagePullPolicy: Never` or `IfNotPresent`; nothing is ever pulled).
    """

    def __init__(
        self,
        bin_dir: Path,
        *,
        images: Sequence[nodeimages.ImageArchive] = (),
        network: NodeNetwork = NodeNetwork(),
        run_dir: Path = RUN_DIR,
        lock_file: Path = LOCK_FILE,
        start_timeout: float = START_TIMEOUT,
        lock_timeout: float = LOCK_TIMEOUT,
        log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
    ) -> None:
        self.bin_dir = Path(bin_dir)
        self.images = tuple(images)
        self.network = network
        self.run_dir = run_dir
        self.lock_file = lock_file
        self.start_timeout = start_timeout
        self.lock_timeout = lock_timeout
        self._log = log
        self.plane: ControlPlane | None = None
        self.startup_seconds: float | None = None
        self.before: hoststate.HostState | None = None
        self._lock: IO[str] | None = None
        self._components: dict[str, _Component] = {}
        self._began = 0.0
        # directories whose processes and mounts are this node's (the control plane's
        # work directory is added once known, and kept for the snapshot after stop())
        self._markers = {str(run_dir)}

    # -- paths and clients -------------------------------------------------------------

    @property
    def containerd_socket(self) -> Path:
        return self.run_dir / "containerd" / "containerd.sock"

    @property
    def kubeconfig(self) -> Path:
        return self._plane.kubeconfig

    @property
    def _plane(self) -> ControlPlane:
        if self.plane is None:
            raise RuntimeError("the real node has not been started")
        return self.plane

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        return self._plane.kubectl(*args, input=input, check=check, timeout=timeout)

    def helm(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 180.0
    ) -> subprocess.CompletedProcess[str]:
        return self._plane.helm(*args, input=input, check=check, timeout=timeout)

    def env(self) -> dict[str, str]:
        return self._plane.env()

    def ctr(
        self, *args: str, check: bool = True, timeout: float = 10.0
    ) -> subprocess.CompletedProcess[str]:
        """containerd's own client on this node's socket, in the kubelet's namespace."""
        argv = ["ctr", "--address", str(self.containerd_socket), "--timeout", f"{timeout:g}s"]
        argv += ["-n", "k8s.io", *args]
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout + 30, check=False
        )
        if check and result.returncode != 0:
            raise CommandFailed(result.returncode, argv, result.stdout, result.stderr)
        return result

    def pids(self) -> dict[str, int]:
        """The components' process ids, the control plane's included."""
        out = {name: c.pid for name, c in self._components.items()}
        if self.plane is not None:
            out.update(zip(("etcd", "kube-apiserver"), self.plane.pids(), strict=False))
        return out

    def log_tail(self, component: str, lines: int = 40) -> str:
        if component in ("etcd", "kube-apiserver") and self.plane is not None:
            return self.plane.log_tail(component, lines)
        found = self._components.get(component)
        return found.log_tail(lines) if found else ""

    def snapshot(self) -> hoststate.HostState:
        """The machine's state as far as this node could touch it (see devtools/hoststate)."""
        if self.plane is not None and self.plane.workdir is not None:
            self._markers.add(str(self.plane.workdir))
        return hoststate.capture(sorted(self._markers), self.network.bridge)

    def node_group(self, name: str = "realnode") -> dict[str, Any]:
        """A resource group (limits-file entry) whose one node is exactly this node."""
        allocatable = self.allocatable()
        return {
            "resourceGroup": name,
            "acceleratorType": "gpu",
            "cpuNumber": int(allocatable["cpu"]),
            "memorySize": _mebibytes(allocatable["memory"]),
            "gpuNumber": EXTENDED_RESOURCES["nvidia.com/gpu"],
            "nvLimits": 0,
            "dcuLimits": 0,
            "mluLimits": 0,
            "nodeNumber": 1,
            "maxTime": "unlimited",
        }

    def allocatable(self) -> dict[str, str]:
        node = json.loads(self.kubectl("get", "node", NODE_NAME, "-o", "json").stdout)
        return dict(node["status"]["allocatable"])

    # -- lifecycle ----------------------------------------------------------------------

    def __enter__(self) -> RealNode:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> RealNode:
        problems = prerequisites_missing()
        if problems:
            raise RealNodeUnavailable("; ".join(problems))
        self._began = time.monotonic()
        self._acquire_lock()
        imported: concurrent.futures.Future[None] | None = None
        try:
            if (self.run_dir / _STATE_FILE).exists():
                self._log("[node] a previous run did not finish: cleaning up after it")
                _teardown(self.run_dir, self.network, self.bin_dir, self._log, self._ctr_args())
            self.before = self.snapshot()
            self._record_state()
            self._network_up()
            self._step("containerd serving", self._start_containerd)
            # the import (seconds: the nodelimits image is ~275 MB) overlaps the rest: no
            # pod can be scheduled before start() returns, so none looks for an image early
            importer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="import")
            imported = importer.submit(self._import_images)
            importer.shutdown(wait=False)
            self._step("etcd and kube-apiserver ready", self._start_control_plane)
            self._step("controller-manager and scheduler started", self._start_controllers)
            self._step("kubelet started", self._start_kubelet)
            self._step("kube-proxy healthy", self._start_proxy)
            self._step(f"node {NODE_NAME} Ready", self._wait_node_ready)
            self._step("extended resources allocatable", self._advertise_extended_resources)
            self._step("default service account", self._wait_default_service_account)
            self._step("images imported", imported.result)
        except BaseException:
            if imported is not None and not imported.done():
                self._stop("containerd")  # its client, the import, then fails at once
                concurrent.futures.wait([imported], timeout=STOP_TIMEOUT * 3)
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - self._began
        return self

    def stop(self) -> None:
        """Undo everything `start()` did, whatever step it reached; idempotent."""
        if self._lock is None:
            return
        began = time.monotonic()
        try:
            self._stop_components()
            self._log(f"[node] components stopped in {time.monotonic() - began:.1f} s")
            _teardown(self.run_dir, self.network, self.bin_dir, self._log, self._ctr_args())
        finally:
            self.plane = None
            self._components.clear()
            self._release_lock()
            self._log(f"[node] stopped and undone in {time.monotonic() - began:.1f} s")

    # -- start-up steps -----------------------------------------------------------------

    def _step(self, what: str, action: Callable[[], None]) -> None:
        action()
        self._log(f"[node {time.monotonic() - self._began:6.1f}s] {what}")

    def _deadline(self) -> float:
        return self._began + self.start_timeout

    def _acquire_lock(self) -> None:
        self.lock_file.parent.mkdir(parents=True, exist_ok=True)
        lock = self.lock_file.open("a+")
        deadline = time.monotonic() + self.lock_timeout
        told = False
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    lock.close()
                    raise RealNodeError(
                        f"another real node holds {self.lock_file} (pid {_read(self.lock_file)})"
                        f" for more than {self.lock_timeout:g} s"
                    ) from None
                if not told:
                    self._log(f"[node] waiting for the real node of pid {_read(self.lock_file)}")
                    told = True
                time.sleep(1)
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        self._lock = lock

    def _release_lock(self) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def _record_state(self) -> None:
        """What teardown restores, on disk: a SIGKILLed run is undone by the next start."""
        for sub in ("logs", "pids", "kube", "cni/net.d", "cni/ipam", "containerd"):
            (self.run_dir / sub).mkdir(parents=True, exist_ok=True)
        state = {
            "sysctls": hoststate.sysctls(),
            "nft_tables": list(hoststate.capture([], self.network.bridge).nft_tables),
            "existing_dirs": [d for d in hoststate.WATCHED_DIRS if os.path.lexists(d)],
            "bridge_existed": _link_exists(self.network.bridge),
        }
        (self.run_dir / _STATE_FILE).write_text(json.dumps(state, indent=1))

    def _network_up(self) -> None:
        net = self.network
        if _link_exists(net.bridge):
            raise RealNodeError(f"a link named {net.bridge} exists already: not ours, not touched")
        prefix = net.pod_cidr.split("/")[1]
        _run(["ip", "link", "add", net.bridge, "type", "bridge"])
        _run(["ip", "addr", "add", f"{net.node_ip}/{prefix}", "dev", net.bridge])
        _run(["ip", "link", "set", net.bridge, "up"])
        # ClusterIPs stay on the bridge even where kube-proxy has no rule for them
        _run(["ip", "route", "replace", net.service_cidr, "dev", net.bridge, "src", net.node_ip])
        guard = (
            f"table inet {_GUARD_TABLE} {{\n"
            "  chain forward {\n"
            "    type filter hook forward priority -10; policy accept;\n"
            f'    iifname "{net.bridge}" oifname != "{net.bridge}" drop\n'
            f'    iifname != "{net.bridge}" oifname "{net.bridge}" drop\n'
            "  }\n}\n"
        )
        _run(["nft", "-f", "-"], input=guard)
        self._log(f"[node] bridge {net.bridge} {net.node_ip}/{prefix}, nothing forwarded off it")

    def _spawn(self, name: str, argv: Sequence[str]) -> _Component:
        component = _Component(name, argv, self.run_dir / "logs" / f"{name}.log", os.environ)
        self._components[name] = component
        (self.run_dir / "pids" / name).write_text(f"{component.pid} {argv[0]}")
        return component

    def _wait(self, what: str, probe: Callable[[], bool], component: str | None = None) -> None:
        while True:
            owner = self._components.get(component or "")
            if owner is not None and owner.exited():
                raise RealNodeError(
                    f"{component} exited with code {owner.process.returncode} while waiting "
                    f"for {what}\n--- last lines of its log ---\n{owner.log_tail()}"
                )
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                if probe():
                    return
            if time.monotonic() > self._deadline():
                tail = self.log_tail(component) if component else ""
                raise RealNodeError(
                    f"{what}: not ready within {self.start_timeout:g} s of start"
                    + (f"\n--- last lines of the {component} log ---\n{tail}" if tail else "")
                )
            time.sleep(0.25)

    def _start_containerd(self) -> None:
        config = self.run_dir / "containerd.toml"
        config.write_text(_containerd_config(self.run_dir))
        (self.run_dir / "cni" / "net.d" / "10-nodelimits.conflist").write_text(
            json.dumps(_cni_config(self.run_dir, self.network), indent=1)
        )
        # images and container filesystems in memory (~0.6 GB with the nodelimits image):
        # faster to unpack, and gone with one umount instead of a 10 s delete of 16k files
        size = f"size={CONTAINERD_TMPFS_MIB}m,mode=0700"
        _run(
            [
                "mount",
                "-t",
                "tmpfs",
                "-o",
                size,
                "nodelimits-containerd",
                str(self.run_dir / "containerd"),
            ]
        )
        self._spawn("containerd", ["containerd", "--config", str(config), "--log-level", "warn"])
        self._wait(
            "containerd", lambda: self.ctr("version", check=False).returncode == 0, "containerd"
        )

    def _import_images(self) -> None:
        archives = [nodeimages.pause(IMAGE_CACHE), *self.images]
        for archive in archives:
            # unpacking the ~275 MB nodelimits image takes seconds, more on a busy machine
            imported = self.ctr(
                "images", "import", str(archive.path), check=False, timeout=IMPORT_TIMEOUT
            )
            if imported.returncode != 0:
                raise RealNodeError(
                    f"ctr images import {archive.path} failed: {imported.stderr.strip()[-600:]}"
                )
        names = set(self.ctr("images", "ls", "-q").stdout.split())
        missing = [a.name for a in archives if a.name not in names]
        if missing:
            raise RealNodeError(f"images not in containerd after import: {', '.join(missing)}")

    def _start_control_plane(self) -> None:
        net = self.network
        plane = _NodeControlPlane(
            self.bin_dir,
            host=net.node_ip,
            serving_hosts=(
                net.kubernetes_service_ip,
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
            authorization_mode="Node,RBAC",
            admission_plugins=("NodeRestriction", "ServiceAccount"),
            service_cidr=net.service_cidr,
            start_timeout=max(10.0, self._deadline() - time.monotonic()),
        )
        self.plane = plane
        plane.start()
        self.snapshot()  # records the control plane's directory among the markers

    def _start_controllers(self) -> None:
        pki = self._pki
        kcm = self._component_kubeconfig("controller-manager")
        self._spawn(
            "kube-controller-manager",
            [
                str(self.bin_dir / "kube-controller-manager"),
                f"--kubeconfig={kcm}",
                f"--authentication-kubeconfig={kcm}",
                f"--authorization-kubeconfig={kcm}",
                "--bind-address=127.0.0.1",
                f"--secure-port={_PORTS['kube-controller-manager']}",
                f"--cert-dir={self.run_dir / 'kcm-certs'}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'serving-ca.crt'}",
                "--use-service-account-credentials=true",
                "--controllers=*",
                "--leader-elect=false",
                f"--service-cluster-ip-range={self.network.service_cidr}",
                "--profiling=false",
            ],
        )
        scheduler = self._component_kubeconfig("scheduler")
        self._spawn(
            "kube-scheduler",
            [
                str(self.bin_dir / "kube-scheduler"),
                f"--kubeconfig={scheduler}",
                f"--authentication-kubeconfig={scheduler}",
                f"--authorization-kubeconfig={scheduler}",
                "--bind-address=127.0.0.1",
                f"--secure-port={_PORTS['kube-scheduler']}",
                "--leader-elect=false",
                "--profiling=false",
            ],
        )

    @property
    def _pki(self) -> Path:
        workdir = self._plane.workdir
        assert workdir is not None
        return workdir / "pki"

    def _component_kubeconfig(self, name: str) -> Path:
        path = self.run_dir / "kube" / f"{name}.kubeconfig"
        _write_kubeconfig(
            path,
            server=self._plane.url,
            ca=self._pki / "serving-ca.crt",
            cert=self._pki / f"{name}.crt",
            key=self._pki / f"{name}.key",
        )
        return path

    def _start_kubelet(self) -> None:
        config = self.run_dir / "kubelet-config.yaml"
        config.write_text(yaml.safe_dump(self._kubelet_config(), sort_keys=False))
        self._spawn(
            "kubelet",
            [
                str(self.bin_dir / "kubelet"),
                f"--config={config}",
                f"--kubeconfig={self._component_kubeconfig('kubelet')}",
                f"--root-dir={self.run_dir / 'kubelet'}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={self.network.node_ip}",
            ],
        )

    def _kubelet_config(self) -> dict[str, Any]:
        pki = self._pki
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            # cgroup v1 here: kubelet >= 1.35 refuses it unless told
            "failCgroupV1": False,
            # containerd 1.6 has no RuntimeConfig RPC, so the kubelet reads the driver here
            "cgroupDriver": "cgroupfs",
            "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            # the kubelet's -999 needs CAP_SYS_RESOURCE, which these machines do not grant
            "oomScoreAdj": 0,
            "maxPods": 60,
            "address": self.network.node_ip,
            "port": _PORTS["kubelet"],
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": _PORTS["kubelet-healthz"],
            "tlsCertFile": str(pki / "kubelet-serving.crt"),
            "tlsPrivateKeyFile": str(pki / "kubelet-serving.key"),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": False},
                "x509": {"clientCAFile": str(pki / "apiserver-kubelet-client-ca.crt")},
            },
            "authorization": {"mode": "AlwaysAllow"},
            "systemReserved": {"memory": f"{_reserved_memory_kib()}Ki"},
            # never evict for disk: a test machine's disk may be nearly full
            "evictionHard": {
                "memory.available": f"{EVICTION_MEMORY_MIB}Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
                "nodefs.inodesFree": "1%",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "imageMinimumGCAge": "87600h",
            "serializeImagePulls": False,
            "podLogsDir": str(self.run_dir / "pod-logs"),
            "registerNode": True,
            "resolvConf": "",
            "staticPodPath": "",
            "syncFrequency": "10s",
            "fileCheckFrequency": "10s",
            "nodeStatusUpdateFrequency": "5s",
            "shutdownGracePeriod": "0s",
            "logging": {"verbosity": 1},
        }

    def _start_proxy(self) -> None:
        net = self.network
        config = self.run_dir / "kube-proxy.yaml"
        settings = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "mode": "iptables",
            "clientConnection": {"kubeconfig": str(self._component_kubeconfig("kube-proxy"))},
            "hostnameOverride": NODE_NAME,
            "bindAddress": net.node_ip,
            "clusterCIDR": net.pod_cidr,
            # pod -> Service -> pod on the same bridge: answers come back through the host
            "iptables": {"masqueradeAll": True},
            "healthzBindAddress": f"127.0.0.1:{_PORTS['kube-proxy-healthz']}",
            "metricsBindAddress": f"127.0.0.1:{_PORTS['kube-proxy-metrics']}",
            # leave the machine's conntrack table sizes and timeouts alone
            "conntrack": {
                "maxPerCore": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
            "nodePortAddresses": [f"{net.node_ip}/32"],
        }
        config.write_text(yaml.safe_dump(settings, sort_keys=False))
        self._spawn("kube-proxy", [str(self.bin_dir / "kube-proxy"), f"--config={config}"])
        self._wait(
            "kube-proxy healthz",
            lambda: _http_ok(f"127.0.0.1:{_PORTS['kube-proxy-healthz']}", "/healthz"),
            "kube-proxy",
        )

    def _node(self) -> dict[str, Any] | None:
        result = self.kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
        return json.loads(result.stdout) if result.returncode == 0 else None

    def _wait_node_ready(self) -> None:
        def ready() -> bool:
            node = self._node()
            conditions = (node or {}).get("status", {}).get("conditions", [])
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

        self._wait(f"node {NODE_NAME} Ready", ready, "kubelet")

    def _advertise_extended_resources(self) -> None:
        # capacity as a device plugin would report it; allocatable too, which the kubelet
        # would otherwise fill in only at its next status update (up to 5 s later)
        patch = [
            {"op": "add", "path": f"/status/{field}/{name.replace('/', '~1')}", "value": str(n)}
            for name, n in EXTENDED_RESOURCES.items()
            for field in ("capacity", "allocatable")
        ]
        self.kubectl(
            "patch", "node", NODE_NAME, "--subresource=status", "--type=json",
            "-p", json.dumps(patch),
        )  # fmt: skip

        def allocatable() -> bool:
            node = self._node() or {}
            have = node.get("status", {}).get("allocatable", {})
            return all(have.get(k) == str(v) for k, v in EXTENDED_RESOURCES.items())

        self._wait("extended resources allocatable", allocatable, "kubelet")

    def _wait_default_service_account(self) -> None:
        self._wait(
            "the default service account",
            lambda: self.kubectl("get", "serviceaccount", "default", check=False).returncode == 0,
            "kube-controller-manager",
        )

    # -- teardown -------------------------------------------------------------------------

    def _ctr_args(self) -> list[str]:
        return ["ctr", "--address", str(self.containerd_socket), "--timeout", "5s", "-n", "k8s.io"]

    def _stop_components(self) -> None:
        """Controllers first, then the pods (through the kubelet: CNI DEL, unmounts), then
        the kubelet, kube-proxy, the control plane and containerd."""
        for name in ("kube-controller-manager", "kube-scheduler"):
            self._stop(name)
        kubelet = self._components.get("kubelet")
        if kubelet is not None and not kubelet.exited() and self.plane is not None:
            self.kubectl(
                "delete", "pods", "--all", "--all-namespaces", "--grace-period=0", "--force",
                "--wait=false", check=False, timeout=30,
            )  # fmt: skip
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and _tasks(self._ctr_args()):
                time.sleep(0.25)
            self._log(f"[node] pods gone, tasks left: {len(_tasks(self._ctr_args()))}")
        self._stop("kubelet")
        self._stop("kube-proxy")
        if self.plane is not None:
            self.plane.stop()
        _kill_tasks(self._ctr_args())
        self._stop("containerd")

    def _stop(self, name: str) -> None:
        component = self._components.pop(name, None)
        if component is not None:
            component.stop(STOP_TIMEOUT)
            with contextlib.suppress(FileNotFoundError):
                (self.run_dir / "pids" / name).unlink()


_STATE_FILE = "state.json"
_GUARD_TABLE = "nodelimits_guard"
_NFT_TABLES_OF_IPTABLES = {"filter", "nat", "mangle", "raw", "security"}


def _teardown(
    run_dir: Path,
    network: NodeNetwork,
    bin_dir: Path,
    log: Callable[[str], None],
    ctr_args: Sequence[str],
) -> None:
    """Undo a node from what its run directory recorded; safe to run more than once."""
    state_file = run_dir / _STATE_FILE
    state: dict[str, Any] = json.loads(state_file.read_text()) if state_file.exists() else {}

    @contextlib.contextmanager
    def phase(what: str) -> Iterator[None]:
        began = time.monotonic()
        yield
        if (took := time.monotonic() - began) > SLOW_PHASE:
            log(f"[node] teardown: {what} took {took:.1f} s")

    with phase("processes"):
        _kill_recorded(run_dir / "pids")
        _kill_tasks(ctr_args)
        socket_path = str(run_dir / "containerd" / "containerd.sock")
        for pid, argv in _processes():
            # the shims re-parent to init: find those serving this run's socket, by exact argv
            if "containerd-shim" in argv[0] and socket_path in argv:
                _kill(pid)
    proxy = bin_dir / "kube-proxy"
    if proxy.exists() and (run_dir / "kube-proxy.yaml").exists():
        with phase("kube-proxy --cleanup"):
            subprocess.run(
                [str(proxy), "--cleanup"], capture_output=True, timeout=60, check=False
            )  # removes kube-proxy's chains; the kubelet's own are removed below
    with phase("mounts"):
        _unmount_under(run_dir)
    with phase("network"):
        if _link_exists(network.bridge) and not state.get("bridge_existed", False):
            subprocess.run(["ip", "link", "del", network.bridge], check=False)
        subprocess.run(
            ["nft", "delete", "table", "inet", _GUARD_TABLE], capture_output=True, check=False
        )
        _remove_kube_chains()
        _remove_new_empty_nft_tables(set(state.get("nft_tables", [])))
    with phase("cgroups and sysctls"):
        _remove_kubepods_cgroups()
        _restore_sysctls(state.get("sysctls", {}))
    with phase("files"):
        existing = set(state.get("existing_dirs", hoststate.WATCHED_DIRS))
        for directory in hoststate.WATCHED_DIRS:
            if directory not in existing:
                _remove_tree(Path(directory))
        for result in Path("/var/lib/cni/results").glob("nodelimits-*"):
            result.unlink(missing_ok=True)
        shutil.rmtree(run_dir, ignore_errors=True)
    if run_dir.exists():
        log(f"[node] could not remove all of {run_dir}")


def _processes() -> Iterator[tuple[int, list[str]]]:
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                raw = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            argv = raw.decode(errors="replace").split("\0")
            if argv and argv[0]:
                yield int(proc.name), argv


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


def _kill_recorded(pids_dir: Path) -> None:
    """SIGKILL processes recorded by a run that died, if the pid still runs the same program."""
    if not pids_dir.is_dir():
        return
    for record in pids_dir.iterdir():
        try:
            pid_text, program = record.read_text().split(" ", 1)
            cmdline = Path(f"/proc/{pid_text}/cmdline").read_bytes().split(b"\0")[0].decode()
        except (OSError, ValueError):
            continue
        if cmdline == program:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(int(pid_text), signal.SIGKILL)
            _kill(int(pid_text))


def _tasks(ctr_args: Sequence[str]) -> list[str]:
    address = ctr_args[ctr_args.index("--address") + 1]
    if not _listening(address):
        return []  # ctr would wait out its timeout on a socket nobody serves
    try:
        result = subprocess.run(
            [*ctr_args, "tasks", "ls", "-q"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return result.stdout.split() if result.returncode == 0 else []


def _kill_tasks(ctr_args: Sequence[str]) -> None:
    """Whatever containers the kubelet did not stop: kill and delete them via containerd."""
    tasks = _tasks(ctr_args)
    for task in tasks:
        subprocess.run(
            [*ctr_args, "tasks", "kill", "-s", "SIGKILL", task], capture_output=True, check=False
        )
    if tasks:
        time.sleep(0.5)
    for task in _tasks(ctr_args):
        subprocess.run([*ctr_args, "tasks", "delete", "-f", task], capture_output=True, check=False)


def _unmount_under(root: Path) -> None:
    """Unmount everything mounted below `root` (volumes, netns, rootfs), deepest first."""
    for _ in range(5):
        mounts = sorted(
            {
                line.split()[4]
                for line in Path("/proc/self/mountinfo").read_text().splitlines()
                if line.split()[4].startswith(str(root))
            },
            reverse=True,
        )
        if not mounts:
            return
        for mount_point in mounts:
            if subprocess.run(["umount", mount_point], capture_output=True, check=False).returncode:
                subprocess.run(["umount", "-l", mount_point], capture_output=True, check=False)


def _remove_kube_chains() -> None:
    """The chains the kubelet makes (KUBE-FIREWALL, KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT)
    and any kube-proxy left: the jumps to them first, then the chains."""
    for tool in ("iptables", "ip6tables"):
        result = subprocess.run([f"{tool}-save"], capture_output=True, text=True, check=False)
        table, chains, jumps = "", [], []
        for line in result.stdout.splitlines():
            if line.startswith("*"):
                table = line[1:]
            elif line.startswith(":KUBE-"):
                chains.append((table, line[1:].split()[0]))
            elif line.startswith("-A ") and " -j KUBE-" in line and not line.startswith("-A KUBE-"):
                jumps.append((table, shlex.split(line)[1:]))
        for table, rule in jumps:
            subprocess.run([tool, "-t", table, "-D", *rule], capture_output=True, check=False)
        for table, chain in chains:
            subprocess.run([tool, "-t", table, "-F", chain], capture_output=True, check=False)
        for table, chain in chains:
            subprocess.run([tool, "-t", table, "-X", chain], capture_output=True, check=False)


def _remove_new_empty_nft_tables(before: set[str]) -> None:
    """iptables-nft creates tables (ip filter, ip6 nat, ...) for the chains: drop those that
    were not there before and hold no rule now."""
    for line in hoststate.capture([], "").nft_tables:
        if line in before:
            continue
        _, family, name = line.split()
        if name not in _NFT_TABLES_OF_IPTABLES:
            continue
        listing = subprocess.run(
            ["nft", "list", "table", family, name], capture_output=True, text=True, check=False
        ).stdout
        rules = [
            raw.strip()
            for raw in listing.splitlines()
            if raw.strip()
            and not raw.strip().startswith(("table ", "chain ", "type ", "policy ", "}"))
        ]
        if not rules:
            subprocess.run(
                ["nft", "delete", "table", family, name], capture_output=True, check=False
            )


def _remove_kubepods_cgroups() -> None:
    for top in Path("/sys/fs/cgroup").glob("*/kubepods*"):
        for directory in sorted(
            (p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
        ):
            with contextlib.suppress(OSError):
                directory.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


def _restore_sysctls(values: dict[str, str]) -> None:
    # twice: writing *.forwarding also rewrites other keys (accept_redirects)
    for _ in range(2):
        current = hoststate.sysctls()
        for key, value in values.items():
            if current.get(key) != value:
                path = Path("/proc/sys", *key.split("."))
                with contextlib.suppress(OSError):
                    path.write_text(value.replace(" ", "\t"))


def _remove_tree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)


def _listening(unix_socket: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        try:
            sock.connect(unix_socket)
        except OSError:
            return False
    return True


def _link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def _run(argv: Sequence[str], input: str | None = None) -> None:
    result = subprocess.run(list(argv), input=input, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RealNodeError(f"{shlex.join(argv)} failed: {result.stderr.strip()}")


def _read(path: Path) -> str:
    try:
        return path.read_text().strip() or "?"
    except OSError:
        return "?"


def _http_ok(hostport: str, path: str) -> bool:
    host, port = hostport.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=2) as sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        return sock.recv(64).startswith((b"HTTP/1.0 200", b"HTTP/1.1 200"))


def _mem_total_kib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1])
    raise RealNodeError("no MemTotal in /proc/meminfo")


def _allocatable_memory_mib() -> int:
    """What pods get: whole GiB, at least RESERVED_MEMORY_MIB below the machine's memory."""
    total_mib = _mem_total_kib() // 1024
    return max(1024, (total_mib - RESERVED_MEMORY_MIB) // 1024 * 1024)


def _reserved_memory_kib() -> int:
    """systemReserved memory such that capacity - reserved - eviction = allocatable exactly."""
    return max(0, _mem_total_kib() - (_allocatable_memory_mib() + EVICTION_MEMORY_MIB) * 1024)


def _mebibytes(quantity: str) -> int:
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(int(quantity[: -len(suffix)]) * factor)
    return int(quantity) // (1024 * 1024)


def _write_kubeconfig(path: Path, *, server: str, ca: Path, cert: Path, key: Path) -> None:
    def b64(file: Path) -> str:
        return base64.b64encode(file.read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "node", "cluster": {"server": server, "certificate-authority-data": b64(ca)}}
        ],
        "users": [
            {
                "name": "user",
                "user": {"client-certificate-data": b64(cert), "client-key-data": b64(key)},
            }
        ],
        "contexts": [{"name": "node", "context": {"cluster": "node", "user": "user"}}],
        "current-context": "node",
    }
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def _containerd_config(run_dir: Path) -> str:
    """containerd 1.6 (Debian bookworm); everything it writes lives under run_dir, except
    the shim sockets (/run/containerd/s, hard-coded in 1.6)."""
    cd = run_dir / "containerd"
    return f"""version = 2
root = "{cd / "root"}"
state = "{cd / "state"}"
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{cd / "containerd.sock"}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{cd / "opt"}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{nodeimages.PAUSE}"
  disable_apparmor = true
  enable_selinux = false
  # Without CAP_SYS_RESOURCE nothing may lower oom_score_adj below ours (the kubelet asks
  # -998 for sandboxes, -997 for Guaranteed pods): clamp it to containerd's own.
  restrict_oom_score_adj = true
  disable_hugetlb_controller = true
  tolerate_missing_hugetlb_controller = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_unprivileged_ports = true
  enable_unprivileged_icmp = true

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{run_dir / "cni" / "net.d"}"
    max_conf_num = 1

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{shutil.which("runc") or "/usr/sbin/runc"}"
        Root = "{run_dir / "runc"}"
        SystemdCgroup = false
"""


def _cni_config(run_dir: Path, net: NodeNetwork) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": "nodelimits",
        "plugins": [
            {
                "type": "bridge",
                "bridge": net.bridge,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(run_dir / "cni" / "ipam"),
                    "ranges": [[{"subnet": net.pod_cidr, "gateway": net.node_ip}]],
                    # the Service range only: pods have no default route out of the machine
                    "routes": [{"dst": net.service_cidr}],
                },
            }
        ],
    }


# -- `python -m devtools.realnode` (`make cluster-node`) ------------------------------------


class _Stop(Exception):
    pass


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.realnode",
        description="Run a real single-node cluster (pods run) until Ctrl-C (or SIGTERM).",
    )
    parser.parse_args(argv)

    def on_signal(signum: int, frame: object) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise _Stop

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        bin_dir = find_node_bin_dir()
        images = [nodeimages.busybox(IMAGE_CACHE)]
    except (TestbinUnavailable, nodeimages.ImageUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    node = RealNode(bin_dir, images=images)
    try:
        node.start()
        print(
            f"real node ready in {node.startup_seconds:.1f} s: {node.kubeconfig}\n\n"
            f"  export KUBECONFIG={node.kubeconfig}\n"
            f"  export PATH={bin_dir}:$PATH\n\n"
            f"images: {nodeimages.BUSYBOX} (imagePullPolicy: Never or IfNotPresent)\n"
            f"logs: {node.run_dir}/logs/\n"
            f"stop with Ctrl-C (or kill {os.getpid()}); everything is then undone.",
            flush=True,
        )
        while all(not c.exited() for c in node._components.values()):
            time.sleep(1)
        print("error: a component exited; stopping", file=sys.stderr)
        return 1
    except _Stop:
        return 0
    except (RealNodeError, RealNodeUnavailable, ControlPlaneError, CommandFailed) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        node.stop()
        print("stopped; processes, mounts, network and sysctls undone.", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
