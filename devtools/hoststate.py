"""What a real node can leave behind on the machine, captured so before and after compare.

The real node (devtools/realnode.py) starts processes, mounts volumes and network
namespaces, adds a bridge and veths, iptables chains and nft tables, sets sysctls and
creates cgroups. `capture()` records each of those that the node could have touched;
`differences()` says, kubectl-style, what changed. Other work on the machine (another
test run's control plane, a podman build) is left out by looking only at what the node
owns: its run directory, its bridge, its chains, the kubepods cgroups, the sysctls the
kubelet and CNI write.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

__all__ = ["SYSCTL_PATTERN", "WATCHED_DIRS", "HostState", "capture", "differences", "sysctls"]

SYSCTL_PATTERN = re.compile(
    r"^(kernel\.(panic|keys\.)|vm\.(overcommit|panic)|net\.ipv4\.(ip_forward|conf\.(all|default|lo)\.)"
    r"|net\.bridge\.|net\.netfilter\.nf_conntrack_(max|tcp_timeout))"
)
"""The sysctls the kubelet, kube-proxy and the CNI bridge plugin write (and a margin)."""

WATCHED_DIRS = (
    "/run/containerd",
    "/var/lib/cni",
    "/var/log/pods",
    "/var/log/containers",
    "/var/lib/kubelet",
    "/etc/kubernetes",
    "/run/netns",
)
"""Fixed paths the components create whatever their configuration says."""

_CHAIN = re.compile(r"^:(\S+)", re.MULTILINE)
_TABLE = re.compile(r"^\*(\S+)", re.MULTILINE)
_OWN_CHAIN = re.compile(r"^(KUBE-|CNI-)")


@dataclass(frozen=True, slots=True)
class HostState:
    """One snapshot; every field is a sorted tuple, so equal states compare equal."""

    processes: tuple[str, ...]
    mounts: tuple[str, ...]
    links: tuple[str, ...]
    routes: tuple[str, ...]
    iptables_chains: tuple[str, ...]
    nft_tables: tuple[str, ...]
    sysctls: tuple[str, ...]
    cgroups: tuple[str, ...]
    paths: tuple[str, ...]


def capture(markers: Sequence[str], bridge: str) -> HostState:
    """The state of everything a node could have touched: `markers` are its directories
    (a process naming one, or a mount below one, is the node's), `bridge` its bridge."""
    return HostState(
        processes=_processes(markers),
        mounts=_mounts(markers),
        links=_links(bridge),
        routes=_lines(["ip", "-4", "route", "show", "dev", bridge], quiet=True),
        iptables_chains=_iptables_chains(),
        nft_tables=_lines(["nft", "list", "tables"], quiet=True),
        sysctls=tuple(f"{k} = {v}" for k, v in sorted(sysctls().items())),
        cgroups=tuple(sorted(str(p) for p in Path("/sys/fs/cgroup").glob("*/kubepods*"))),
        paths=tuple(sorted(p for p in WATCHED_DIRS if os.path.lexists(p))),
    )


def differences(before: HostState, after: HostState) -> list[str]:
    """One line per item that appeared or disappeared between the snapshots."""
    out: list[str] = []
    for field in fields(HostState):
        old, new = set(getattr(before, field.name)), set(getattr(after, field.name))
        out += [f"{field.name}: left behind: {item}" for item in sorted(new - old)]
        out += [f"{field.name}: gone: {item}" for item in sorted(old - new)]
    return out


def sysctls() -> dict[str, str]:
    """The watched sysctls and their values, read from /proc/sys."""
    out: dict[str, str] = {}
    root = Path("/proc/sys")
    for directory in ("kernel", "vm", "net/ipv4", "net/bridge", "net/netfilter"):
        for path in (root / directory).rglob("*"):
            key = ".".join(path.relative_to(root).parts)
            if not SYSCTL_PATTERN.match(key) or not path.is_file():
                continue
            try:
                out[key] = " ".join(path.read_text().split())
            except OSError:
                continue  # write-only or not readable here
    return out


def _processes(markers: Sequence[str]) -> tuple[str, ...]:
    """Processes whose command line names a marker, or that run in kubepods."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cgroup = (proc / "cgroup").read_text()
        except OSError:
            continue  # exited meanwhile
        if any(m in argv for m in markers) or "/kubepods" in cgroup:
            found.append(f"{proc.name} {argv.strip()[:200]}")
    return tuple(sorted(found))


def _mounts(markers: Sequence[str]) -> tuple[str, ...]:
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mount_point = line.split()[4]
        if any(mount_point.startswith(d) for d in (*markers, *WATCHED_DIRS)):
            out.append(mount_point)
    return tuple(sorted(out))


def _links(bridge: str) -> tuple[str, ...]:
    """The bridge and every interface enslaved to it (the pods' veths)."""
    out = []
    for line in _lines(["ip", "-o", "link", "show"]):
        name = line.split(":", 2)[1].strip().split("@")[0]
        if name == bridge or f" master {bridge} " in line:
            out.append(name)
    return tuple(sorted(out))


def _iptables_chains() -> tuple[str, ...]:
    out = []
    for tool in ("iptables-save", "ip6tables-save"):
        text = "\n".join(_lines([tool], quiet=True))
        table = ""
        for line in text.splitlines():
            if match := _TABLE.match(line):
                table = match.group(1)
            elif (match := _CHAIN.match(line)) and _OWN_CHAIN.match(match.group(1)):
                out.append(f"{tool.split('-')[0]} {table} {match.group(1)}")
    return tuple(sorted(out))


def _lines(argv: list[str], *, quiet: bool = False) -> tuple[str, ...]:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    if result.returncode != 0 and not quiet:
        return ()
    return tuple(sorted(line for line in result.stdout.splitlines() if line.strip()))
