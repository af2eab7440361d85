"""``nodelimits check`` over a 10,000-object multi-document file vs PyYAML alone.

Both sides of the ratio are measured in this run, on the same file: the bare
``yaml.load_all`` (libyaml's CSafeLoader, as ``check`` uses) and the whole check (read,
parse, decide, render JSON). Target (issue 2): check <= 1.5x the bare load. Reported
in-process (the work itself) and as whole commands (with interpreter start-up).

    python -m bench.bench_check [--count 10000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from bench.workload import best_of, manifests
from webhook.check import CheckReport, run_check
from webhook.config import PlatformSettings, Settings
from webhook.metrics import Metrics
from webhook.output import render_check_json
from webhook.platform import build_limits_cache

ROOT = Path(__file__).resolve().parents[1]
LIMITS = ROOT / "examples" / "limits.yaml"
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "manifests.yaml"
        path.write_text(yaml.safe_dump_all(manifests(args.count), sort_keys=False))
        size_mb = path.stat().st_size / 1e6
        settings = Settings(platform=PlatformSettings(limits_file=LIMITS))

        async def check_once() -> CheckReport:
            # What `nodelimits check --limits-file` runs: the same cache as serve, over the file.
            async with build_limits_cache(settings, Metrics()) as cache:
                return await run_check([str(path)], settings.policy, cache)

        def bare() -> None:
            list(yaml.load_all(path.read_text(), Loader=LOADER))

        def check() -> None:
            report = asyncio.run(check_once())
            assert not report.errors, report.errors[:3]
            render_check_json(report)

        t_bare, t_check = best_of(args.rounds, bare, check)

        load_cmd = [
            sys.executable,
            "-c",
            "import sys,yaml;list(yaml.load_all(open(sys.argv[1]).read(),Loader=yaml.CSafeLoader))",
            str(path),
        ]
        check_cmd = [
            sys.executable,
            "-m",
            "webhook",
            "check",
            "-f",
            str(path),
            "--limits-file",
            str(LIMITS),
            "-o",
            "json",
        ]
        t_bare_cmd, t_check_cmd = best_of(
            args.rounds,
            lambda: subprocess.run(load_cmd, check=True),
            lambda: subprocess.run(check_cmd, stdout=subprocess.DEVNULL, check=False),
        )

    print(f"file: {args.count} objects, {size_mb:.1f} MB")
    print(
        f"in-process: yaml.load_all {t_bare:.2f}s, nodelimits check {t_check:.2f}s, "
        f"ratio {t_check / t_bare:.2f}x (target <= 1.5x)"
    )
    print(
        f"whole commands: python+yaml {t_bare_cmd:.2f}s, nodelimits check {t_check_cmd:.2f}s, "
        f"ratio {t_check_cmd / t_bare_cmd:.2f}x"
    )
    print(f"check throughput: {args.count / t_check:,.0f} objects/s")


if __name__ == "__main__":
    main()
