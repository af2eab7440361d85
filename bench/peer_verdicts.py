"""Where the peer policies' verdicts differ from ``nodelimits check`` (Kubernetes' rules).

The evidence behind "the same check, written by hand in CEL/Rego": each peer policy of
bench/peers.py judges the built-in-kind examples (devtools/examples.py ``built_in_files``)
and a few cases where Kubernetes' resource rules are easy to get wrong (sidecars and init
containers, pod overhead, requests defaulted from limits, memory at the node's size, the
vendor card cap, a card of another vendor, maxTime), and every verdict is set beside the
one ``nodelimits check`` gives with ``examples/limits.yaml``.

* ``vap``: the ValidatingAdmissionPolicy, by server-side dry-run creates through a real
  kube-apiserver (tools/testbin) with only the policy registered;
* ``gatekeeper``: the ConstraintTemplate and Constraint, by ``gator test`` (Gatekeeper's
  offline evaluator, same Rego engine) when tools/peers/build.sh has built it;
* ``kyverno``: the ClusterPolicy, by ``kyverno apply`` (Kyverno's CLI, same engine) when
  built.

    python -m bench.peer_verdicts [--peers vap,gatekeeper,kyverno] [--markdown]

Exit status 0 whatever the verdicts (a difference is a finding, not a failure).
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench import peers
from devtools.builders import container, job, pod
from devtools.examples import LIMITS_FILE, built_in_files, documents

ROOT = Path(__file__).resolve().parents[1]
NAMESPACE = "verdicts"
COVERED = {("", "Pod"), ("batch", "Job")}


@dataclass(frozen=True)
class Case:
    name: str
    obj: dict[str, Any]
    why: str = ""


def _cpu_pod(name: str, *containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return pod(*containers, name=name, group="cpu-small", deadline=3600, **spec)


def extra_cases() -> list[Case]:
    """Hand-made cases on cpu-small (16 CPUs), TeslaM40 (2 GPUs, 31888 MiB), kshdtest (4
    DCUs, maxTime 24:00:00) and a800x8 (8 GPUs, vendor cap 4)."""
    c = container
    return [
        Case(
            "sidecar-after-init",
            _cpu_pod(
                "sidecar-after-init",
                c("app", cpu="8"),
                initContainers=[c("migrate", cpu="10"), c("proxy", cpu="8", sidecar=True)],
            ),
            "fits: the sidecar starts after the init container (max(10, 8 + 8) = 16)",
        ),
        Case(
            "sidecar-before-init",
            _cpu_pod(
                "sidecar-before-init",
                c("app", cpu="4"),
                initContainers=[c("proxy", cpu="8", sidecar=True), c("migrate", cpu="10")],
            ),
            "too big: 8 + 10 = 18 while the init container runs",
        ),
        Case(
            "init-bigger-than-app",
            _cpu_pod("init-bigger", c("app", cpu="1"), initContainers=[c("init", cpu="20")]),
            "too big: the init container alone asks 20",
        ),
        Case(
            "overhead",
            _cpu_pod("overhead", c("app", cpu="15"), overhead={"cpu": "2"}),
            "too big: 15 + 2 of RuntimeClass overhead",
        ),
        Case(
            "limits-only",
            _cpu_pod("limits-only", c("app", limits={"cpu": "20"})),
            "too big: the request defaults to the 20-CPU limit",
        ),
        Case(
            "millicores-over",
            _cpu_pod("millicores", c("a", cpu="8"), c("b", cpu="8001m")),
            "too big by one millicore",
        ),
        Case(
            "memory-at-node-size",
            pod(c("app", cpu="1", memory="31888Mi"), name="memory-full", group="TeslaM40"),
            "the node's whole memory (fits by the platform's figures; no reserve configured)",
        ),
        Case(
            "vendor-cap",
            pod(c("app", cpu="8", gpu=5), name="vendor-cap", group="a800x8", deadline=3600),
            "too big: a800x8 nodes have 8 GPUs but the vendor cap (nvLimits) is 4",
        ),
        Case(
            "other-vendor-card",
            pod(c("app", cpu="2", gpu=1), name="nvidia-on-dcu", group="kshdtest", deadline=60),
            "no node of a DCU group has an NVIDIA GPU",
        ),
        Case(
            "deadline-over-maxtime",
            pod(
                c("app", cpu="2", limits={"hygon.com/dcu": 1}),
                name="long",
                group="kshdtest",
                deadline=200000,
            ),
            "activeDeadlineSeconds above the group's maxTime (24 h)",
        ),
        Case(
            "job-annotation-on-job",
            job(c("train", cpu="20"), name="on-job", group="cpu-small", on_job_metadata=True),
            "too big; the annotation is on the Job, not its pod template",
        ),
        Case(
            "unknown-group",
            pod(c("app", cpu="1"), name="unknown", group="no-such-group"),
            "no such resource group",
        ),
    ]


def example_cases() -> list[Case]:
    out = []
    for path in built_in_files():
        for index, doc in enumerate(documents(path)):
            name = f"{path.name}#{index}" if len(documents(path)) > 1 else path.name
            out.append(Case(name, doc))
    return out


def _group_kind(obj: dict[str, Any]) -> tuple[str, str]:
    group, _, _ = str(obj["apiVersion"]).rpartition("/")
    return group, str(obj["kind"])


def _in_namespace(obj: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out.setdefault("metadata", {})["namespace"] = NAMESPACE
    return out


# --- nodelimits check: the reference -------------------------------------------------------


def nodelimits_verdicts(cases: list[Case], work: Path) -> list[str]:
    """'allow', 'deny: <message>' or 'skip' per case, from one ``nodelimits check -o json``
    over a directory holding one file per case."""
    cases_dir = work / "cases"
    cases_dir.mkdir()
    paths = []
    for i, case in enumerate(cases):
        path = cases_dir / f"case-{i:03d}.yaml"
        path.write_text(yaml.safe_dump(case.obj))
        paths.append(str(path))
    argv = [sys.executable, "-m", "webhook", "check", "-f", str(cases_dir)]
    argv += ["--limits-file", str(LIMITS_FILE), "-o", "json"]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=300)
    report = json.loads(done.stdout)
    by_file: dict[str, str] = {}
    for result in report["results"]:
        source = str(result["source"]).rsplit(": document", 1)[0]
        if result["skipped"]:
            by_file[source] = "skip"
        elif result["allowed"]:
            by_file[source] = "allow"
        else:
            by_file[source] = f"deny: {result['message']}"
    for error in report["errors"]:
        text = json.dumps(error)
        for name in paths:
            if name in text:
                by_file[name] = f"error: {text[:160]}"
    return [by_file.get(name, "skip") for name in paths]


# --- ValidatingAdmissionPolicy, through a real apiserver ------------------------------------


def vap_verdicts(cases: list[Case]) -> list[str]:
    from bench.bench_apiserver import Api
    from devtools.controlplane import ControlPlane, find_bin_dir

    paths = {("", "Pod"): "pods", ("batch", "Job"): "jobs"}
    out = []
    with ControlPlane(find_bin_dir()) as plane:
        api = Api(plane)
        api.client.post("/api/v1/namespaces", json={"metadata": {"name": NAMESPACE}})
        api.apply(peers.vap_manifests(NAMESPACE))
        _await_vap(api)
        for case in cases:
            gk = _group_kind(case.obj)
            if gk not in COVERED:
                out.append("not covered")
                continue
            prefix = "/api/v1" if gk[0] == "" else f"/apis/{gk[0]}/v1"
            response = api.create(
                f"{prefix}/namespaces/{NAMESPACE}/{paths[gk]}",
                _in_namespace(case.obj),
                dry_run=True,
            )
            if response.status_code == 201:
                out.append("allow")
                continue
            message = str(response.json().get("message", ""))
            if peers.POLICY_NAME in message:
                out.append(f"deny: {message.split('denied request: ', 1)[-1]}")
            else:
                out.append(f"apiserver rejects: {message[:120]}")
    return out


def _await_vap(api: Any) -> None:
    import time

    probe = pod(container("c", cpu="999"), name="probe", namespace=NAMESPACE, group="TeslaM40")
    for _ in range(200):
        response = api.create(f"/api/v1/namespaces/{NAMESPACE}/pods", probe, dry_run=True)
        if response.status_code != 201 and peers.POLICY_NAME in response.text:
            return
        time.sleep(0.2)
    raise RuntimeError(f"the policy never took effect: {response.text}")


# --- Gatekeeper (gator) and Kyverno (CLI), offline ----------------------------------------------


def gator_verdicts(cases: list[Case], gator: Path, work: Path) -> list[str]:
    policy = work / "gatekeeper.yaml"
    policy.write_text(peers.gatekeeper_manifests())
    out = []
    for i, case in enumerate(cases):
        if _group_kind(case.obj) not in COVERED:
            out.append("not covered")
            continue
        obj = work / f"gk-{i}.yaml"
        obj.write_text(yaml.safe_dump(_in_namespace(case.obj)))
        argv = [str(gator), "test", "-f", str(policy), "-f", str(obj), "-o", "json"]
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
        if done.returncode != 0 and not done.stdout.strip():  # no results: gator failed
            out.append(f"error: {(done.stderr or done.stdout).strip()[:160]}")
            continue
        results = json.loads(done.stdout or "[]") or []
        messages = [r.get("msg", "") for r in results]
        out.append(f"deny: {'; '.join(messages)}" if messages else "allow")
    return out


def kyverno_verdicts(cases: list[Case], cli: Path, work: Path) -> list[str]:
    policy = work / "kyverno.yaml"
    policy.write_text(peers.kyverno_manifests())
    out = []
    for i, case in enumerate(cases):
        if _group_kind(case.obj) not in COVERED:
            out.append("not covered")
            continue
        obj = work / f"ky-{i}.yaml"
        obj.write_text(yaml.safe_dump(_in_namespace(case.obj)))
        argv = [str(cli), "apply", str(policy), "--resource", str(obj), "--policy-report"]
        argv += ["--output-format", "json"]
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
        out.append(_kyverno_result(done))
    return out


def _kyverno_result(done: subprocess.CompletedProcess[str]) -> str:
    text = done.stdout
    start = text.find("{")
    try:
        report = json.loads(text[start:]) if start >= 0 else {}
    except ValueError:
        return f"error: {(done.stderr or text).strip()[:160]}"
    results = report.get("results") or []
    failed = [r.get("message", "") for r in results if r.get("result") in ("fail", "error")]
    if failed:
        return f"deny: {'; '.join(failed)}"
    if any(r.get("result") == "pass" for r in results):
        return "allow"
    return "allow (no rule applied)" if done.returncode == 0 else f"error: {done.stderr[:160]}"


# --- report -----------------------------------------------------------------------------------


def _word(verdict: str) -> str:
    return verdict.split(":", 1)[0]


def agrees(reference: str, verdict: str) -> bool:
    """Same decision (allow / deny); 'skip' and 'not covered' count as allow."""

    def decision(v: str) -> str:
        word = _word(v)
        return (
            "allow" if word in ("allow", "skip", "not covered", "allow (no rule applied)") else word
        )

    return decision(reference) == decision(verdict) or (
        decision(reference) == "deny" and decision(verdict) == "apiserver rejects"
    )


def run(args: argparse.Namespace) -> int:
    # SIGTERM (timeout, kill) unwinds like Ctrl-C: the control plane and files are removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    cases = example_cases() + extra_cases()
    work = Path(tempfile.mkdtemp(prefix="nodelimits-verdicts-"))
    columns: dict[str, list[str]] = {}
    notes: list[str] = []
    try:
        columns["nodelimits check"] = nodelimits_verdicts(cases, work)
        runners: dict[str, Callable[[], list[str]]] = {"vap": lambda: vap_verdicts(cases)}
        gk = peers.built("gatekeeper") if "gatekeeper" in args.peers else None
        if gk is not None:
            runners["gatekeeper"] = lambda: gator_verdicts(cases, gk / "gator", work)
        ky = peers.built("kyverno") if "kyverno" in args.peers else None
        if ky is not None:
            runners["kyverno"] = lambda: kyverno_verdicts(cases, ky / "kubectl-kyverno", work)
        for name in args.peers:
            if name not in runners:
                notes.append(f"{name}: not run (tools/peers/build.sh has not built it)")
                continue
            columns[name] = runners[name]()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    reference = columns["nodelimits check"]
    names = list(columns)
    differ = dict.fromkeys(names[1:], 0)
    print("| case | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for i, case in enumerate(cases):
        cells = []
        for name in names:
            verdict = columns[name][i]
            mark = ""
            if name != "nodelimits check" and not agrees(reference[i], verdict):
                mark = " **differs**"
                differ[name] += 1
            shown = verdict if args.messages else _word(verdict)
            cells.append(shown + mark)
        label = f"{case.name} ({case.why})" if case.why else case.name
        print(f"| {label} | " + " | ".join(cells) + " |")
    print()
    for name, count in differ.items():
        print(f"{name}: {count} of {len(cases)} verdicts differ from nodelimits check")
    for note in notes:
        print(note)
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--peers",
        type=lambda s: [x for x in s.split(",") if x],
        default=["vap", "gatekeeper", "kyverno"],
    )
    parser.add_argument("--messages", action="store_true", help="print the messages too")
    sys.exit(run(parser.parse_args()))


if __name__ == "__main__":
    main()
