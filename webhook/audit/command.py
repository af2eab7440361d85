"""The ``nodelimits audit`` command (added to :data:`webhook.cli.main`)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from webhook.commandline import (
    CONTEXT_SETTINGS,
    EXIT_ERROR,
    config_option,
    fail,
    judging_settings,
    limits_source_options,
)

__all__ = ["audit", "audit_controller"]

_Command = TypeVar("_Command", bound=Callable[..., Any])


def _cluster_options(command: _Command) -> _Command:
    """What both audit commands read and how: namespace, selector, kinds, paging, and the
    cluster (kubeconfig and context, else in-cluster credentials)."""
    options = (
        click.option("-n", "--namespace", metavar="NS", help="Only this namespace (default: all)."),
        click.option(
            "-l", "--selector", metavar="SELECTOR", help="Label selector, as kubectl's -l."
        ),
        click.option(
            "--kinds",
            "kinds",
            multiple=True,
            metavar="KIND[,KIND]",
            help="Only these kinds, named as admission.kinds names them (Pod, Job, "
            "PyTorchJob.kubeflow.org, ...). Repeatable. Default: every kind nodelimits reads.",
        ),
        click.option(
            "--chunk-size",
            type=click.IntRange(1, 10_000),
            default=500,
            show_default=True,
            help="Objects per list page (limit/continue).",
        ),
        click.option(
            "--kubeconfig",
            type=click.Path(path_type=Path, dir_okay=False),
            help="Default: $KUBECONFIG, ~/.kube/config, else in-cluster credentials.",
        ),
        click.option("--context", "kube_context", metavar="NAME", help="kubeconfig context."),
    )
    for option in reversed(options):
        command = option(command)
    return command


_report_api_option = click.option(
    "--report-api",
    "report_api",
    type=click.Choice(["wgpolicyk8s.io", "openreports.io"]),
    default="wgpolicyk8s.io",
    show_default=True,
    help="The reports' API: wgpolicyk8s.io/v1alpha2 PolicyReport/ClusterPolicyReport, or "
    "openreports.io/v1alpha1 Report/ClusterReport.",
)


def _kinds(values: tuple[str, ...]) -> list[str] | None:
    names = [k.strip() for v in values for k in v.split(",") if k.strip()]
    return names or None


@click.command("audit", context_settings=CONTEXT_SETTINGS)
@limits_source_options
@_cluster_options
@click.option(
    "--resource-group",
    metavar="GROUP",
    help="Check objects without the resource-group annotation against GROUP.",
)
@click.option(
    "-o",
    "--output",
    "output_format",
    type=click.Choice(["table", "json", "yaml", "policyreport"]),
    default="table",
    show_default=True,
    help="policyreport: a List of reports (of --report-api), one per namespace.",
)
@_report_api_option
@config_option
def audit(
    limits_file: Path | None,
    live: bool,
    namespace: str | None,
    selector: str | None,
    kinds: tuple[str, ...],
    resource_group: str | None,
    output_format: str,
    report_api: str,
    chunk_size: int,
    kubeconfig: Path | None,
    kube_context: str | None,
    config: Path | None,
) -> None:
    """Audit what the cluster already runs: would nodelimits admit it today?

    Reads every kind nodelimits checks (the core kinds, running Pods, and the kind table's
    kinds whose CRD is installed) and judges each object as `nodelimits check` does.

    \b
    Examples:
      nodelimits audit --live
      nodelimits audit --limits-file limits.yaml -n team-a --kinds Job,PyTorchJob.kubeflow.org
      nodelimits audit --live -o policyreport | kubectl apply -f -
      nodelimits audit --live -o policyreport --report-api openreports.io

    \b
    Exit status:
      0  every checked object fits
      1  at least one object is rejected
      2  usage, configuration, platform or cluster error (an object or kind not judged)
    """
    from webhook.audit.cluster import KubeCluster
    from webhook.audit.reports import REPORT_APIS, render
    from webhook.audit.scan import candidate_targets, run_audit
    from webhook.metrics import Metrics
    from webhook.output import check_warnings
    from webhook.platform import build_limits_cache
    from webhook.platform.errors import PlatformError
    from webhook.platform.static import LimitsFileError

    settings = judging_settings(config, limits_file, live)
    policy_settings = settings.policy
    if resource_group is not None:
        policy_settings = policy_settings.model_copy(update={"default_group": resource_group})
    try:
        targets = candidate_targets(policy_settings, _kinds(kinds))
    except ValueError as exc:
        fail(str(exc))
    try:
        cluster = KubeCluster(kubeconfig, kube_context)
    except Exception as exc:  # the client's ConfigException and file errors
        fail(f"cannot reach the cluster: {exc}")

    async def run() -> int:
        async with build_limits_cache(settings, Metrics()) as cache:
            report = await run_audit(
                cluster,
                policy_settings,
                cache,
                targets=targets,
                namespace=namespace,
                selector=selector,
                chunk_size=chunk_size,
            )
        click.echo(render(report, output_format, api=REPORT_APIS[report_api]), nl=False)
        if output_format == "table":  # as `check`: stdout stays the table
            for line in check_warnings(report.as_check_report()):
                click.echo(line, err=True)
        for error in report.errors:
            click.echo(f"error: {error}", err=True)
        return report.exit_code

    try:
        code = asyncio.run(run())
    except LimitsFileError as exc:
        for line in str(exc).splitlines():
            click.echo(f"error: {line}", err=True)
        code = EXIT_ERROR
    except PlatformError as exc:
        cluster.close()
        fail(f"platform: {exc}")
    cluster.close()
    sys.exit(code)


@click.command("audit-controller", context_settings=CONTEXT_SETTINGS)
@limits_source_options
@_cluster_options
@click.option(
    "--interval",
    type=click.FloatRange(1),
    default=300.0,
    show_default=True,
    help="Seconds between audits (sooner when a seen group's limits change).",
)
@click.option(
    "--limits-poll",
    type=click.FloatRange(0.1),
    default=10.0,
    show_default=True,
    help="Seconds between reads of the limits the last audit used (through the cache, "
    "so a change shows after at most cache.ttl more).",
)
@click.option("--lease-name", default="nodelimits-audit", show_default=True)
@click.option(
    "--lease-namespace",
    envvar="POD_NAMESPACE",
    required=True,
    help="Namespace of the Lease (default: $POD_NAMESPACE).",
)
@click.option(
    "--identity", envvar="POD_NAME", required=True, help="This replica (default: $POD_NAME)."
)
@click.option("--lease-duration", type=click.FloatRange(1), default=15.0, show_default=True)
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option("--metrics-address", default="0.0.0.0", show_default=True)  # noqa: S104
@click.option(
    "--events/--no-events",
    default=False,
    show_default=True,
    help="Write a Warning Event (events.k8s.io/v1) on each violating object.",
)
@click.option(
    "--events-per-run",
    type=click.IntRange(1),
    default=50,
    show_default=True,
    help="At most this many Events per audit; the rest come in later audits.",
)
@click.option(
    "--events-repeat-after",
    type=click.FloatRange(1),
    default=3600.0,
    show_default=True,
    help="Seconds before the same finding on the same object gets another Event.",
)
@_report_api_option
@config_option
def audit_controller(
    limits_file: Path | None,
    live: bool,
    namespace: str | None,
    selector: str | None,
    kinds: tuple[str, ...],
    interval: float,
    limits_poll: float,
    lease_name: str,
    lease_namespace: str,
    identity: str,
    lease_duration: float,
    metrics_port: int,
    metrics_address: str,
    events: bool,
    events_per_run: int,
    events_repeat_after: float,
    report_api: str,
    chunk_size: int,
    kubeconfig: Path | None,
    kube_context: str | None,
    config: Path | None,
) -> None:
    """Audit continuously and write reports, one per namespace: PolicyReports
    (wgpolicyk8s.io/v1alpha2), or Reports (openreports.io/v1alpha1) with --report-api
    openreports.io; one replica writes, elected through a coordination.k8s.io Lease.

    Audits on becoming the leader, every --interval seconds, and as soon as the limits of a
    (group, type) the last audit used change. Metrics nodelimits_audit_* on
    http://--metrics-address:--metrics-port/metrics.
    """
    import logging
    import signal

    import aiohttp.web

    from webhook.audit.cluster import KubeCluster
    from webhook.audit.controller import AuditController, ControllerOptions, metrics_app
    from webhook.audit.events import EventOptions
    from webhook.audit.reports import REPORT_APIS
    from webhook.audit.scan import candidate_targets
    from webhook.metrics import Metrics
    from webhook.platform import build_limits_cache

    settings = judging_settings(config, limits_file, live)
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        targets = candidate_targets(settings.policy, _kinds(kinds))
    except ValueError as exc:
        fail(str(exc))
    try:
        cluster = KubeCluster(kubeconfig, kube_context)
    except Exception as exc:  # the client's ConfigException and file errors
        fail(f"cannot reach the cluster: {exc}")
    options = ControllerOptions(
        identity=identity,
        lease_namespace=lease_namespace,
        lease_name=lease_name,
        lease_duration=lease_duration,
        interval=interval,
        limits_poll=limits_poll,
        namespace=namespace,
        selector=selector,
        chunk_size=chunk_size,
        events=EventOptions(events_per_run, events_repeat_after) if events else None,
        report_api=REPORT_APIS[report_api],
    )
    metrics = Metrics()

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        runner = aiohttp.web.AppRunner(metrics_app(metrics), access_log=None)
        await runner.setup()
        await aiohttp.web.TCPSite(runner, metrics_address, metrics_port).start()
        logging.getLogger("nodelimits.audit").info(
            "audit-controller %s: metrics on %s:%d", identity, metrics_address, metrics_port
        )
        try:
            async with build_limits_cache(settings, metrics) as cache:
                controller = AuditController(cluster, settings.policy, cache, metrics, options,
                                             targets)  # fmt: skip
                await controller.run(stop)
        finally:
            await runner.cleanup()

    try:
        asyncio.run(run())
    finally:
        cluster.close()
