"""The ``nodelimits`` command: serve | check | limits | simulate.

This is the only place that maps exceptions to exit codes: 0 = every checked object
fits, 1 = at least one rejected, 2 = usage, input, configuration or platform error.
Errors are printed as ``error: <message>``, never as a traceback.
"""

from __future__ import annotations

import sys
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import NoReturn

import click

from webhook.config import ConfigError, Settings, load_settings
from webhook.review import LimitsProvider

__all__ = ["main"]

EXIT_OK, EXIT_REJECTED, EXIT_ERROR = 0, 1, 2

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def fail(message: str) -> NoReturn:
    """Print a one-line error and exit 2."""
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_ERROR)


def settings_from(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as exc:
        for line in exc.problems:
            click.echo(f"error: {line}", err=True)
        sys.exit(EXIT_ERROR)


config_option = click.option(
    "--config",
    "config",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="NODELIMITS_CONFIG_FILE",
    help="YAML settings file (same keys as the NODELIMITS_* environment).",
)


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(package_name="nodelimits")
def main() -> None:
    """Reject Kubernetes workloads that can never fit one node of their SCNet / Sugon AC
    resource group.

    Pods and Jobs name a resource group in the annotation nodelimits.io/resource-group;
    nodelimits compares their effective CPU, memory, GPU/DCU/MLU cards and run time with
    the per-node limits of that group, read from the platform's Open API.

    \b
    Examples:
      nodelimits check -f job.yaml --limits-file limits.yaml
      nodelimits check -f manifests/ --live --output json
      nodelimits limits TeslaM40 --accelerator-type gpu
      nodelimits serve --config /etc/nodelimits/config.yaml
    """


# --- check ------------------------------------------------------------------------------


@main.command(context_settings=CONTEXT_SETTINGS)
@click.option(
    "-f",
    "--filename",
    "paths",
    multiple=True,
    required=True,
    metavar="PATH",
    help="Manifest file, directory (recursive: .yaml, .yml, .json) or - for stdin. Repeatable.",
)
@click.option(
    "--limits-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Per-node limits of the resource groups (YAML or JSON; see `nodelimits limits --all`).",
)
@click.option("--live", is_flag=True, help="Read the limits from the platform's Open API.")
@click.option(
    "--resource-group",
    metavar="GROUP",
    help="Check objects without the resource-group annotation against GROUP.",
)
@click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
)
@config_option
def check(
    paths: tuple[str, ...],
    limits_file: Path | None,
    live: bool,
    resource_group: str | None,
    output: str,
    config: Path | None,
) -> None:
    """Check manifests offline: does every workload fit one node of its resource group?

    Reads Pods, Jobs, CronJobs, Deployments, StatefulSets, DaemonSets, ReplicaSets,
    ReplicationControllers, PodTemplates and Lists of them; other kinds are skipped.

    \b
    Exit status:
      0  every checked object fits
      1  at least one object is rejected
      2  usage, input, configuration or platform error
    """
    import asyncio

    from webhook.check import render_json, render_table, run_check
    from webhook.manifests import ManifestError, expand_paths
    from webhook.platform.errors import PlatformError
    from webhook.platform.static import LimitsFileError, StaticLimits

    if live == (limits_file is not None):
        fail("give exactly one of --limits-file FILE or --live")
    try:
        sources = expand_paths(paths)
    except ManifestError as exc:
        fail(str(exc))
    settings = settings_from(config)
    policy_settings = settings.policy
    if resource_group is not None:
        policy_settings = policy_settings.model_copy(update={"default_group": resource_group})

    async def run() -> int:
        if limits_file is not None:
            report = await run_check(sources, policy_settings, StaticLimits.from_path(limits_file))
        else:
            async with live_limits(settings) as provider:
                report = await run_check(sources, policy_settings, provider)
        out = click.get_text_stream("stdout")
        if output == "json":
            render_json(report, out)
        else:
            render_table(report, out)
        for line in report.errors:
            click.echo(f"error: {line}", err=True)
        return report.exit_code

    try:
        sys.exit(asyncio.run(run()))
    except LimitsFileError as exc:
        for line in str(exc).splitlines():
            click.echo(f"error: {line}", err=True)
        sys.exit(EXIT_ERROR)
    except PlatformError as exc:
        fail(f"platform: {exc}")


def live_limits(settings: Settings) -> AbstractAsyncContextManager[LimitsProvider]:
    """The platform client behind the cache, as a limits provider."""
    from webhook.metrics import Metrics
    from webhook.platform import build_limits_cache

    return build_limits_cache(settings, Metrics())


# --- serve ------------------------------------------------------------------------------
# (admission issue)

# --- limits, simulate -------------------------------------------------------------------
# (platform issue)
