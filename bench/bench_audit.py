"""``nodelimits audit`` of a cluster holding 10,000 objects of mixed kinds, against
``kubectl get -o json`` of the same objects (the baseline), both in this run.

A real etcd + kube-apiserver (devtools.controlplane, the testbin) is filled with the
objects bench.workload makes (Pods, Jobs, CronJobs, Deployments, StatefulSets over ten
namespaces; those the apiserver refuses as invalid are left out and counted). Then, each
round alternating: ``kubectl get <kinds> -A -o json --chunk-size 500`` and ``nodelimits
audit --limits-file examples/limits.yaml -o json --chunk-size 500``, as subprocesses.
Reported: wall seconds, objects/s, peak RSS of the process (wait4's ru_maxrss) and the
requests it made (the apiserver's apiserver_request_total, read before and after).

    python -m bench.bench_audit [--count 10000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.workload import manifests
from devtools.controlplane import ControlPlane, find_bin_dir

ROOT = Path(__file__).resolve().parents[1]
LIMITS = ROOT / "examples" / "limits.yaml"
NAMESPACES = [f"team-{i}" for i in range(10)]
KINDS = "pods,jobs,cronjobs,deployments,statefulsets"
CHUNK = 500
REQUESTS = re.compile(r"^apiserver_request_total\{[^}]*\} (\S+)$", re.MULTILINE)


def requests_served(plane: ControlPlane) -> float:
    """Requests the apiserver counted so far (every verb, resource and code)."""
    text = plane.kubectl("get", "--raw", "/metrics", timeout=60).stdout
    return sum(float(v) for v in REQUESTS.findall(text))


def applicable(obj: dict[str, Any]) -> dict[str, Any]:
    """bench.workload's object with what the apiserver requires and ``check`` does not read:
    a selector and labels for the controllers, a Job's restart policy."""
    kind, name, spec = obj["kind"], obj["metadata"]["name"], obj.get("spec", {})
    if kind in ("Deployment", "StatefulSet"):
        spec["selector"] = {"matchLabels": {"app": name}}
        spec["template"].setdefault("metadata", {}).setdefault("labels", {})["app"] = name
        spec["template"]["spec"]["restartPolicy"] = "Always"
        if kind == "StatefulSet":
            spec["serviceName"] = name
    if kind in ("Job", "CronJob"):
        job = spec if kind == "Job" else spec["jobTemplate"]["spec"]
        if job["template"]["spec"].get("restartPolicy") not in ("Never", "OnFailure"):
            job["template"]["spec"]["restartPolicy"] = "Never"
    return obj


def fill(plane: ControlPlane, count: int) -> int:
    """Create ``count`` objects; the number the apiserver accepted."""
    for namespace in NAMESPACES:
        plane.kubectl("create", "namespace", namespace)
    objects = [applicable(o) for o in manifests(count)]
    for i, obj in enumerate(objects):
        obj["metadata"]["namespace"] = NAMESPACES[i % len(NAMESPACES)]
    for start in range(0, len(objects), CHUNK):
        chunk = {"apiVersion": "v1", "kind": "List", "items": objects[start : start + CHUNK]}
        # --validate=false: an object the apiserver refuses leaves the chunk's others created
        plane.kubectl("create", "--validate=false", "-f", "-", input=json.dumps(chunk),
                      check=False, timeout=600)  # fmt: skip
    listed = json.loads(plane.kubectl("get", KINDS, "-A", "-o", "json", timeout=600).stdout)
    return len(listed["items"])


def measured(argv: Sequence[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS in MiB and stdout of one run of ``argv``."""
    tmp = Path(env["BENCH_TMP"])
    out_path, err_path = tmp / "out.json", tmp / "err.txt"
    began = time.perf_counter()
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - began
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code  # reaped by wait4: Popen must not wait again
    if code not in (0, 1):  # audit: 1 when some object violates, as check
        raise RuntimeError(f"{argv[0]} exited {code}: {err_path.read_text()[-2000:]}")
    return wall, usage.ru_maxrss / 1024, out_path.read_text()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    plane = ControlPlane(find_bin_dir()).start()
    try:
        began = time.perf_counter()
        objects = fill(plane, args.count)
        print(f"cluster: {objects} objects of {args.count} asked for "
              f"(the rest invalid at the apiserver), created in "
              f"{time.perf_counter() - began:.0f} s", flush=True)  # fmt: skip
        env = plane.env()
        assert plane.workdir is not None
        env["BENCH_TMP"] = str(plane.workdir)
        kubectl = [str(plane.bin_dir / "kubectl"), "get", KINDS, "-A", "-o", "json",
                   f"--chunk-size={CHUNK}"]  # fmt: skip
        audit = [sys.executable, "-m", "webhook", "audit", "--limits-file", str(LIMITS),
                 "-o", "json", f"--chunk-size={CHUNK}"]  # fmt: skip
        rows: dict[str, list[tuple[float, float, float]]] = {"kubectl": [], "audit": []}
        for _ in range(args.rounds):
            for name, argv in (("kubectl", kubectl), ("audit", audit)):
                before = requests_served(plane)
                wall, rss, out = measured(argv, env)
                # the metrics read itself is one request
                made = requests_served(plane) - before - 1
                rows[name].append((wall, rss, made))
                if name == "audit":
                    document: Any = json.loads(out)
                    judged = len(document["results"])
                    assert judged >= objects * 0.9, (judged, objects)
        best = {name: min(runs) for name, runs in rows.items()}
        print(f"\n{'':10} {'seconds':>8} {'objects/s':>10} {'peak RSS MiB':>13} {'requests':>9}")
        for name, (wall, rss, made) in best.items():
            print(f"{name:10} {wall:8.2f} {objects / wall:10.0f} {rss:13.0f} {made:9.0f}")
        ratio = best["audit"][0] / best["kubectl"][0]
        print(f"\naudit / kubectl get (wall, best of {args.rounds}): {ratio:.2f}")
    finally:
        plane.stop()


if __name__ == "__main__":
    main()
