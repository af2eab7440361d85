"""Policy evaluation throughput: pod specs decided per second on one core.

Baseline in the same run: ``json.loads`` of the same objects, the least any admission
request costs before a decision. Target (issue 2): >= 20,000 pod specs/s.

    python -m bench.bench_policy [--count 5000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.workload import best_of, manifests
from webhook.config import PolicySettings
from webhook.core import policy, workloads
from webhook.core.limits import LimitsTable
from webhook.platform.static import load_limits_file

LIMITS = Path(__file__).resolve().parents[1] / "examples" / "limits.yaml"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    objs = manifests(args.count)
    texts = [json.dumps(o) for o in objs]
    settings = PolicySettings()
    table = LimitsTable.of(load_limits_file(LIMITS))

    def decide_all() -> None:
        for obj in objs:
            w = workloads.workload_of(obj)
            assert isinstance(w, workloads.Workload)
            policy.evaluate(w, settings, table.get, table.types)

    def decode_all() -> None:
        for text in texts:
            json.loads(text)

    decide_all()  # warm memo caches, as a long-running server has them
    t_policy, t_json = best_of(args.rounds, decide_all, decode_all)
    rate = args.count / t_policy
    print(f"objects: {args.count} (pods, jobs, cronjobs, deployments, statefulsets)")
    print(f"policy: {rate:,.0f} pod specs/s ({t_policy / args.count * 1e6:.1f} us each)")
    print(
        f"json.loads baseline: {args.count / t_json:,.0f} objects/s "
        f"({t_json / args.count * 1e6:.1f} us each)"
    )
    print(f"ratio policy/json.loads time: {t_policy / t_json:.2f}x")
    print(f"target >= 20,000 specs/s: {'met' if rate >= 20_000 else 'NOT met'}")


if __name__ == "__main__":
    main()
