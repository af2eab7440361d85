"""``make demo``: nodelimits in front of a real kube-apiserver, judging examples/.

Starts (on loopback) etcd + kube-apiserver built by tools/testbin, the platform simulator
serving examples/limits.yaml, and ``nodelimits serve`` behind the Helm chart's webhook
configuration; then applies every example with the real kubectl and shows what kubectl
prints. Interactive: stays up for your own manifests until Ctrl-C. Otherwise: stops.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.controlplane import ControlPlane, TestbinUnavailable, find_bin_dir  # noqa: E402
from tests.e2e.stack import running_stack  # noqa: E402

EXAMPLES = ROOT / "examples" / "manifests"
BOLD, DIM, RED, GREEN, RESET = "\033[1m", "\033[2m", "\033[31m", "\033[32m", "\033[0m"


def say(text: str, style: str = BOLD) -> None:
    color = sys.stdout.isatty()
    print(f"{style if color else ''}{text}{RESET if color else ''}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--keep", action="store_true", help="stay up until Ctrl-C")
    parser.add_argument("--no-keep", action="store_true", help="stop right after the examples")
    args = parser.parse_args()
    keep = args.keep or (sys.stdin.isatty() and not args.no_keep)

    t0 = time.monotonic()
    try:
        bin_dir = find_bin_dir()
    except TestbinUnavailable as exc:
        say(f"cannot run the live demo: {exc}", RED)
        say(
            "the offline demo needs no cluster: nodelimits check -f examples/manifests "
            "--limits-file examples/limits.yaml",
            DIM,
        )
        return 2
    work = Path(tempfile.mkdtemp(prefix="nodelimits-demo-"))
    try:
        with ControlPlane(bin_dir) as plane:
            say(f"kube-apiserver {plane.url} ready ({time.monotonic() - t0:.1f}s)", DIM)
            with running_stack(plane, workdir=work) as (simulator, webhook):
                say(
                    f"platform simulator {simulator.url}, nodelimits webhook {webhook.url} "
                    f"({time.monotonic() - t0:.1f}s)",
                    DIM,
                )
                for namespace in ("team-a", "team-b", "team-c", "team-d", "data"):
                    plane.kubectl("create", "namespace", namespace, check=False)
                for manifest in sorted(EXAMPLES.glob("*.yaml")):
                    comment = " ".join(
                        line[2:]
                        for line in manifest.read_text().splitlines()
                        if line.startswith("# ")
                    )
                    say(f"\n$ kubectl apply -f examples/manifests/{manifest.name}")
                    say(f"  ({comment})", DIM)
                    result = plane.kubectl("apply", "-f", str(manifest), check=False)
                    if result.stdout:
                        print(result.stdout.rstrip(), flush=True)
                    if result.stderr:
                        say(result.stderr.rstrip(), RED if result.returncode else "")
                say(f"\ndone in {time.monotonic() - t0:.1f}s.", GREEN)
                if keep:
                    say(
                        f"\nTry your own manifest:\n  export KUBECONFIG={plane.kubeconfig}\n"
                        f"  {bin_dir}/kubectl apply --dry-run=server -f your-job.yaml\n"
                        "(groups: TeslaM40, a800x8, kshdtest, mlu370pool, cpu-small; "
                        "see examples/limits.yaml)\nPress Ctrl-C to stop everything."
                    )
                    stopped = threading.Event()
                    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
                    with contextlib.suppress(KeyboardInterrupt):
                        stopped.wait()
                else:
                    say("(run `make demo` in a terminal to keep it up for your own manifests)", DIM)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    say("stopped; nothing left running.", DIM)
    return 0


if __name__ == "__main__":
    sys.exit(main())
