"""``make demo``: the pod nodelimits prevents, on a real node, then nodelimits judging examples/.

Starts a real single-node cluster inside this machine (devtools/realnode.py: etcd,
kube-apiserver, controllers, scheduler, containerd, kubelet, kube-proxy on a private
bridge; the node has 2 nvidia.com/gpu, like one node of TeslaM40) with the platform
simulator as a pod serving examples/limits.yaml. Then:

1. without nodelimits, a pod asking for 4 GPUs is admitted and stays Pending
   (`kubectl get pod`, its FailedScheduling event);
2. `helm install` of the chart (two replicas Running), and the same apply is denied;
3. every manifest in examples/manifests through the real kubectl (server-side dry runs:
   the same admission, and no pod pulls an example's image from outside the machine);
4. the examples of operators' kinds (Argo, Kubeflow, Ray, ...), whose CRDs this cluster
   does not have, through `nodelimits check` (the same rules, offline).

In a terminal it stays up for your own manifests until Ctrl-C; otherwise (or with
--no-keep) it stops and leaves nothing behind.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

from devtools import nodeimages, nodestack, realnode
from devtools.builders import container, pod
from devtools.controlplane import CommandFailed, ControlPlaneError, TestbinUnavailable
from devtools.stack import EXAMPLE_LIMITS, RELEASE, RELEASE_NAMESPACE

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "manifests"
NAMESPACES = ("team-a", "team-b", "team-c", "team-d", "data")
BOLD, DIM, RED, GREEN, RESET = "\033[1m", "\033[2m", "\033[31m", "\033[32m", "\033[0m"


def say(text: str, style: str = BOLD) -> None:
    color = sys.stdout.isatty()
    print(f"{style if color else ''}{text}{RESET if color else ''}", flush=True)


class Demo:
    def __init__(self, node: realnode.RealNode, image: nodeimages.ImageArchive) -> None:
        self.node, self.image = node, image
        self.t0 = time.monotonic()

    def elapsed(self) -> str:
        return f"{time.monotonic() - self.t0:.1f}s"

    def show(self, *args: str, stdin: str | None = None) -> bool:
        """Print a kubectl command and what it prints; True if it succeeded."""
        say(f"\n$ kubectl {' '.join(args)}")
        result = self.node.kubectl(*args, input=stdin, check=False)
        if result.stdout.strip():
            print(result.stdout.rstrip(), flush=True)
        if result.stderr.strip():
            say(result.stderr.rstrip(), RED if result.returncode else "")
        return result.returncode == 0

    def before_and_after(self, simulator: nodestack.Simulator) -> None:
        four_gpus = pod(container("train", cpu="1", gpu=4), name="train-4gpu", namespace="team-a")
        four_gpus["spec"]["containers"][0].update(image=nodeimages.BUSYBOX, command=["true"])
        manifest = yaml.safe_dump(four_gpus, sort_keys=False)
        say("\n-- 1. without nodelimits: a pod asking for 4 GPUs on a node with 2 --", GREEN)
        print(manifest.rstrip(), flush=True)
        self.show("apply", "-f", "-", stdin=manifest)
        self._wait_failed_scheduling("team-a", "train-4gpu")
        self.show("get", "pod", "train-4gpu", "-n", "team-a")
        self.show(
            "get", "events", "-n", "team-a", "--field-selector",
            "involvedObject.name=train-4gpu,reason=FailedScheduling",
            "-o", "custom-columns=REASON:.reason,MESSAGE:.message",
        )  # fmt: skip
        say("  (it would wait like this forever: the admission said yes, no node can)", DIM)

        say("\n-- 2. helm install nodelimits: two replicas behind a Service --", GREEN)
        say(f"$ helm install {RELEASE} charts/nodelimits -n {RELEASE_NAMESPACE} --wait ...")
        nodestack.install(self.node, self.image, simulator)
        self.show("get", "pods", "-n", RELEASE_NAMESPACE, "-o", "wide")
        self.node.kubectl("delete", "pod", "train-4gpu", "-n", "team-a", "--wait=false")
        say("\nthe same apply, now:", DIM)
        self.show("apply", "-f", "-", stdin=manifest)

    def _wait_failed_scheduling(self, namespace: str, name: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = self.node.kubectl(
                "get", "events", "-n", namespace, "-o", "json",
                "--field-selector", f"involvedObject.name={name},reason=FailedScheduling",
            )  # fmt: skip
            if json.loads(events.stdout)["items"]:
                return
            time.sleep(0.3)

    def examples(self) -> None:
        # server-side dry runs: the same admission, and no pod tries to pull an example's
        # image from a registry outside the machine
        say("\n-- 3. the examples, through the same admission (server-side dry run) --", GREEN)
        custom = []
        for manifest in sorted(EXAMPLES.glob("*.yaml")):
            result = self.node.kubectl(
                "apply", "--dry-run=server", "-f", str(manifest.relative_to(ROOT)), check=False
            )
            if result.returncode and _NOT_SERVED in result.stderr:
                custom.append(manifest)  # a custom resource whose CRD this cluster lacks
                continue
            say(f"\n$ kubectl apply --dry-run=server -f {manifest.relative_to(ROOT)}")
            say(f"  ({_comment(manifest)})", DIM)
            if result.stdout:
                print(result.stdout.rstrip(), flush=True)
            if result.stderr:
                say(result.stderr.rstrip(), RED if result.returncode else "")
        if custom:
            say(
                f"\n-- 4. {len(custom)} examples of operators' kinds (Argo, Kubeflow, Ray, "
                "Volcano, ...): their CRDs are not installed here, so the same rules offline --",
                GREEN,
            )
            offline(custom)


_NOT_SERVED = "no matches for kind"


def _comment(manifest: Path) -> str:
    return " ".join(line[2:] for line in manifest.read_text().splitlines() if line.startswith("# "))


def offline(manifests: list[Path]) -> None:
    limits = EXAMPLE_LIMITS.relative_to(ROOT)
    files = [arg for m in manifests for arg in ("-f", str(m.relative_to(ROOT)))]
    say(f"$ nodelimits check -f examples/manifests/<those {len(manifests)}> --limits-file {limits}")
    result = subprocess.run(
        [sys.executable, "-c", "from webhook.cli import main; main()", "check",
         *files, "--limits-file", str(limits)],
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT,
    )  # fmt: skip
    print((result.stdout + result.stderr).rstrip(), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--keep", action="store_true", help="stay up until Ctrl-C")
    parser.add_argument("--no-keep", action="store_true", help="stop right after the examples")
    args = parser.parse_args()
    keep = args.keep or (sys.stdin.isatty() and not args.no_keep)

    t0 = time.monotonic()
    os.chdir(ROOT)  # kubectl's messages name the examples by their paths in the repository
    missing = realnode.prerequisites_missing()
    if missing:
        say(f"cannot run the live demo: {'; '.join(missing)}", RED)
        return _offline_hint()
    try:
        bin_dir = realnode.find_node_bin_dir()
        image = nodeimages.nodelimits_image(realnode.IMAGE_CACHE, log=lambda line: say(line, DIM))
        busybox = nodeimages.busybox(realnode.IMAGE_CACHE)
    except (TestbinUnavailable, nodeimages.ImageUnavailable) as exc:
        say(f"cannot run the live demo: {exc}", RED)
        return _offline_hint()

    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    node = realnode.RealNode(bin_dir, images=[busybox, image], log=lambda line: say(line, DIM))
    try:
        node.start()
        demo = Demo(node, image)
        demo.t0 = t0
        say(f"real node {realnode.NODE_NAME} Ready ({demo.elapsed()})", DIM)
        for namespace in NAMESPACES:
            node.kubectl("create", "namespace", namespace, check=False)
        groups = yaml.safe_load(EXAMPLE_LIMITS.read_text())["resourceGroups"]
        simulator = nodestack.deploy_simulator(node, image, groups)
        say(f"platform simulator pod at {simulator.url} ({demo.elapsed()})", DIM)
        demo.before_and_after(simulator)
        demo.examples()
        say(f"\ndone in {demo.elapsed()}.", GREEN)
        if keep:
            say(
                f"\nTry your own manifests:\n  export KUBECONFIG={node.kubeconfig}\n"
                f"  export PATH={bin_dir}:$PATH\n  kubectl apply -f your-job.yaml\n"
                "(groups: TeslaM40, a800x8, kshdtest, mlu370pool, cpu-small, see "
                f"examples/limits.yaml; runnable image: {nodeimages.BUSYBOX})\n"
                "Press Ctrl-C to stop everything."
            )
            with contextlib.suppress(KeyboardInterrupt):
                stopped.wait()
        else:
            say("(run `make demo` in a terminal to keep it up for your own manifests)", DIM)
    except (
        realnode.RealNodeError,
        ControlPlaneError,
        nodestack.NodeStackError,
        CommandFailed,
    ) as exc:
        say(f"the demo failed: {exc}", RED)
        return 1
    finally:
        with contextlib.suppress(KeyboardInterrupt):
            node.stop()
    say("stopped; nothing left running.", DIM)
    return 0


def _offline_hint() -> int:
    say(
        "the offline demo needs no cluster: nodelimits check -f examples/manifests "
        "--limits-file examples/limits.yaml",
        DIM,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
