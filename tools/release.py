"""``make image`` and ``make release``: build, publish and install nodelimits, locally.

    python -m tools.release image                 # the image from the work tree
    python -m tools.release release               # HEAD, end to end (below)
    python -m tools.release release --registry HOST:PORT   # push to a registry of yours

``release`` takes the one version from pyproject.toml (Chart.yaml's version and appVersion
must say the same), exports HEAD with ``git archive`` (uncommitted changes never ship) and
builds the image from it with podman (labels: version, git revision); then, with a
registry on loopback (Debian's docker-registry, started for the run unless ``--registry``
names one), pushes the image, packages the chart and pushes it as an OCI artifact, and
installs it with ``helm install oci://...`` (documented values only, the image by digest)
into a fresh control plane, which must accept every object. Every failure is one line on
stderr, ``release: <what>: <how to fix>``, exit status 1; nothing is pushed before the
image is built and every prerequisite was found. What a user's CI adds (multi-arch, SBOM,
signature, pushing off the machine) is .github/workflows/release.yml.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from devtools.controlplane import ControlPlane, ControlPlaneError, TestbinUnavailable, find_bin_dir
from devtools.image import ImageUnavailable, Podman, build_image, image_report, save_oci_archive
from devtools.registry import Registry
from devtools.release import (
    ReleaseError,
    check_versions,
    export_commit,
    install_from_oci,
    package_chart,
    push_chart,
    push_image,
    remove,
    scratch,
)

REVISION = "org.opencontainers.image.revision"


def say(message: str) -> None:
    print(f"[release {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _mb(n: int) -> str:
    return f"{n / 1e6:.0f} MB"


def cmd_image(args: argparse.Namespace) -> int:
    started = time.monotonic()
    built = build_image(args.tag, log=say)
    report = image_report(built.ref)
    say(f"built {built.ref} in {time.monotonic() - started:.0f} s (base {built.base})")
    top = ", ".join(f"{k} {_mb(v)}" for k, v in list(report["site_packages"].items())[:5])
    print(
        f"{built.ref} {_mb(report['size'])} (base {_mb(report['base_size'])}; "
        f"site-packages {_mb(sum(report['site_packages'].values()))}: {top})"
    )
    if args.archive:
        path = save_oci_archive(built.ref, Path(args.archive))
        print(f"OCI archive: {path}")
    return 0


T = TypeVar("T")


def timed(timings: dict[str, float], name: str, fn: Callable[[], T]) -> T:
    started = time.monotonic()
    result = fn()
    timings[name] = time.monotonic() - started
    return result


def cmd_release(args: argparse.Namespace) -> int:
    timings: dict[str, float] = {}

    version = check_versions()
    podman = Podman.default()
    try:
        bin_dir = find_bin_dir()
    except TestbinUnavailable as exc:
        raise ReleaseError(f"helm/kube-apiserver unavailable ({exc}): run make testbin") from None
    helm = bin_dir / "helm"
    work = scratch()
    registry: Registry | None = None
    try:
        source = work / "source"
        commit = export_commit(source)
        say(f"releasing {version} from {commit[:12]} (uncommitted changes are not in it)")
        built = timed(
            timings,
            "build",
            lambda: build_image(
                f"localhost/nodelimits:{version}",
                version=version,
                revision=commit,
                podman=podman,
                context=source,
                log=say,
            ),
        )
        labels = podman.inspect(built.ref).get("Labels") or {}
        if (labels.get("org.opencontainers.image.version"), labels.get(REVISION)) != (
            version,
            commit,
        ):
            raise ReleaseError(f"image labels say {labels}, not {version} at {commit}")
        report = image_report(built.ref, podman)
        if args.registry:
            host = args.registry
        else:
            registry = Registry(workdir=work / "registry").start()
            host = registry.host
            say(f"loopback registry at {host} (docker-registry, storage {registry.workdir})")
        image = timed(
            timings, "push image", lambda: push_image(podman, built.ref, host, version, work)
        )
        say(f"pushed {image.reference} {image.digest}")
        tgz = package_chart(helm, version, work / "chart", source / "charts" / "nodelimits")
        chart = timed(timings, "push chart", lambda: push_chart(helm, tgz, host))
        say(f"pushed {chart.reference} {chart.digest}")
        installed = None
        if not args.no_install:
            with ControlPlane(bin_dir) as plane:
                installed = timed(
                    timings,
                    "helm install",
                    lambda: install_from_oci(plane, host, version, image),
                )
            expected = image.pinned
            if installed.images != [expected]:
                raise ReleaseError(
                    f"the installed Deployment runs {installed.images}, not {expected}"
                )
        summary = {
            "version": version,
            "revision": commit,
            "image": image.pinned,
            "image_size_bytes": report["size"],
            "chart": f"oci://{chart.reference}@{chart.digest}",
            "installed": installed.__dict__ if installed else None,
            "seconds": {k: round(v, 1) for k, v in timings.items()},
        }
        print(json.dumps(summary, indent=2))
        return 0
    finally:
        if registry is not None:
            registry.stop()
        remove(work)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.release", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    image = sub.add_parser("image", help="build the image from the work tree")
    image.add_argument("--tag", default=None, help="default localhost/nodelimits:VERSION")
    image.add_argument("--archive", default=None, help="also write an OCI archive here")
    release = sub.add_parser("release", help="build, push, install: end to end")
    release.add_argument(
        "--registry", default=None, help="HOST:PORT (default: loopback, temporary)"
    )
    release.add_argument("--no-install", action="store_true", help="skip the helm install check")
    args = parser.parse_args(argv)
    try:
        return cmd_image(args) if args.command == "image" else cmd_release(args)
    except (ReleaseError, ImageUnavailable, ControlPlaneError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"release: {first}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
