"""The ``nodelimits`` command: serve | check | audit | limits | simulate | version | completion.

This is the only place that maps exceptions to exit codes: 0 = every checked object
fits, 1 = at least one rejected, 2 = usage, input, configuration or platform error.
Errors are printed as ``error: <message>``, never as a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import click

from webhook.audit.command import audit, audit_controller
from webhook.commandline import (
    CONTEXT_SETTINGS,
    EXIT_ERROR,
    EXIT_OK,
    config_option,
    fail,
    judging_settings,
    limits_source_options,
    settings_from,
)
from webhook.serve.handlers import HANDLERS

__all__ = ["COMPLETE_VAR", "PROG_NAME", "main"]

PROG_NAME = "nodelimits"
COMPLETE_VAR = "_NODELIMITS_COMPLETE"
"""click's completion variable for the installed ``nodelimits`` script."""


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(package_name="nodelimits", prog_name=PROG_NAME)
@click.option("-v", "--verbose", is_flag=True, help="Log platform calls and retries to stderr.")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
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
      source <(nodelimits completion bash)
    """
    if ctx.invoked_subcommand != "serve":  # serve sets up structured JSON logging itself
        # One-shot commands report failures as `error:` lines; the platform layer's
        # warnings (retries, stale values) are noise there unless asked for.
        logging.basicConfig(
            level=logging.DEBUG if verbose else logging.ERROR,
            format="%(levelname)s %(name)s: %(message)s",
        )


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
@limits_source_options
@click.option(
    "--resource-group",
    metavar="GROUP",
    help="Check objects without the resource-group annotation against GROUP.",
)
@click.option(
    "-o",
    "--output",
    "output_format",
    type=click.Choice(["table", "json", "yaml", "junit"]),
    default="table",
    show_default=True,
    help="table for people; json/yaml (one document) and junit (JUnit XML) for CI.",
)
@click.option("--no-headers", is_flag=True, help="Table: the rows only, no header or summary.")
@click.option(
    "--fail-only",
    is_flag=True,
    help="List only rejected objects (errors and the summary still cover every input).",
)
@config_option
def check(
    paths: tuple[str, ...],
    limits_file: Path | None,
    live: bool,
    resource_group: str | None,
    output_format: str,
    no_headers: bool,
    fail_only: bool,
    config: Path | None,
) -> None:
    """Check manifests offline: does every workload fit one node of its resource group?

    Reads Pods, Jobs, CronJobs, Deployments, StatefulSets, DaemonSets, ReplicaSets,
    ReplicationControllers, PodTemplates and Lists of them; other kinds are skipped.
    A path with no manifests in it is an error. In table mode warnings go to stderr.

    \b
    Examples:
      nodelimits check -f manifests/ --limits-file limits.yaml --fail-only
      nodelimits check -f manifests/ --live -o junit > nodelimits-report.xml

    \b
    Exit status:
      0  every checked object fits
      1  at least one object is rejected
      2  usage, input, configuration or platform error
    """
    from webhook import output
    from webhook.check import run_check
    from webhook.manifests import ManifestError, expand_paths
    from webhook.metrics import Metrics
    from webhook.platform import build_limits_cache
    from webhook.platform.errors import PlatformError
    from webhook.platform.static import LimitsFileError

    settings = judging_settings(config, limits_file, live)
    try:
        sources = expand_paths(paths)
    except ManifestError as exc:
        fail(str(exc))
    policy_settings = settings.policy
    if resource_group is not None:
        policy_settings = policy_settings.model_copy(update={"default_group": resource_group})

    async def run() -> int:
        async with build_limits_cache(settings, Metrics()) as cache:
            report = await run_check(sources, policy_settings, cache)
        rendered = output.render_check(
            report, output_format, headers=not no_headers, fail_only=fail_only
        )
        click.echo(rendered, nl=False)
        if output_format == "table":  # the other formats carry them; stdout stays parseable
            for line in output.check_warnings(report):
                click.echo(line, err=True)
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


# --- audit (webhook/audit/command.py) ------------------------------------------------------

main.add_command(audit)
main.add_command(audit_controller)


# --- serve ------------------------------------------------------------------------------


_SERVE_HELP = f"""Run the admission webhook (kopf, admission-only, no RBAC beyond discovery).

Serves {", ".join(h.path for h in HANDLERS)} over TLS, and /metrics, /healthz, /readyz over
HTTP. Reads settings from --config and NODELIMITS_* variables; logs one JSON line per review.
"""


@main.command(context_settings=CONTEXT_SETTINGS, help=_SERVE_HELP)
@config_option
@click.option("--port", type=int, help="Webhook TLS port (default 9443; server.port).")
@click.option("--metrics-port", type=int, help="Metrics and probes port (default 8080).")
@click.option(
    "--dev-webhook-url",
    metavar="URL",
    help="Development only: let kopf register a webhook configuration pointing at URL "
    "(e.g. https://127.0.0.1:9443). In production the Helm chart owns it.",
)
def serve(
    config: Path | None,
    port: int | None,
    metrics_port: int | None,
    dev_webhook_url: str | None,
) -> None:
    from webhook.platform.static import LimitsFileError
    from webhook.serve.process import configure_logging
    from webhook.serve.process import serve as run_server
    from webhook.serve.selfcerts import SyncError, serve_with_certificates

    server: dict[str, object] = {}
    if port is not None:
        server["port"] = port
    if metrics_port is not None:
        server["metrics_port"] = metrics_port
    if dev_webhook_url is not None:
        server["manage_webhook_url"] = dev_webhook_url
    settings = settings_from(config, server=server) if server else settings_from(config)
    configure_logging(settings)
    for path in (settings.server.cert_file, settings.server.key_file):
        if not path.is_file() and not settings.certificates.self_managed:
            fail(f"serving certificate file not found: {path} (server.cert_file/key_file)")
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(serve_with_certificates(settings, run_server))
    except LimitsFileError as exc:
        fail(str(exc).splitlines()[0])
    except SyncError as exc:
        fail(f"cannot serve: {exc}")
    except OSError as exc:
        fail(f"cannot serve: {exc}")


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


# --- limits, simulate -------------------------------------------------------------------


@main.command("limits")
@click.argument("group", required=False)
@click.option(
    "--accelerator-type",
    "-t",
    "accelerator",
    type=click.Choice(["gpu", "dcu", "mlu", "cpu"], case_sensitive=False),
    help="Type to look up (default: the group's configured or offered types).",
)
@click.option("--all", "all_groups", is_flag=True, help="Every group the platform offers.")
@click.option(
    "--output",
    "-o",
    "output_format",
    type=click.Choice(["table", "yaml", "json"]),
    default="table",
    show_default=True,
    help="yaml/json are the limits-file format (usable as --limits-file).",
)
@config_option
def limits(
    group: str | None,
    accelerator: str | None,
    all_groups: bool,
    output_format: str,
    config: Path | None,
) -> None:
    """Print the per-node limits of GROUP, or of every group with --all.

    \b
    Examples:
      nodelimits limits TeslaM40
      nodelimits limits kshdtest --accelerator-type dcu -o json
      nodelimits limits --all -o yaml > limits.yaml
    """
    from webhook import output
    from webhook.core.limits import AcceleratorType
    from webhook.metrics import Metrics
    from webhook.platform import build_limits_cache, snapshot
    from webhook.platform.errors import PlatformError
    from webhook.platform.static import LimitsFileError

    if (group is None) != all_groups:
        fail("give either a GROUP or --all")
    settings = settings_from(config)
    wanted = AcceleratorType.parse(accelerator) if accelerator else None

    async def run() -> snapshot.Snapshot:
        async with build_limits_cache(settings, Metrics()) as cache:
            return await snapshot.take(cache, settings.policy, group=group, accelerator=wanted)

    try:
        taken = asyncio.run(run())
    except LimitsFileError as exc:
        fail(str(exc).replace("\n", "\nerror: "))
    except PlatformError as exc:
        fail(f"platform: {exc}")
    memory_unit = settings.policy.memory_unit
    click.echo(output.render_limits(taken.limits, output_format, memory_unit=memory_unit), nl=False)
    for line in taken.problems:
        click.echo(f"error: {line}", err=True)
    sys.exit(EXIT_ERROR if taken.problems else EXIT_OK)


@main.command("simulate")
@click.option(
    "--config",
    "config",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="Groups (limits-file format) plus optional accounts, clusters and faults.",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=65106,
    show_default=True,
    help="0: any free port (the listening line tells which).",
)
@click.option("--tls-cert", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--tls-key", type=click.Path(path_type=Path, dir_okay=False))
def simulate(
    config: Path, host: str, port: int, tls_cert: Path | None, tls_key: Path | None
) -> None:
    """Serve a simulated SCNet / Sugon AC Open API, with fault injection, until stopped.

    Prints "simulator listening on http(s)://HOST:PORT" when ready. At run time,
    POST /_simulator/faults injects faults and GET /_simulator/stats counts requests.

    The default account "sim" (AK sim-ak, SK sim-sk) has every credential; from the
    repository's root, in two shells (examples/simulator-client.yaml says how to reach it):

    \b
    Examples:
      nodelimits simulate --config examples/limits.yaml
      nodelimits limits TeslaM40 --config examples/simulator-client.yaml
    """
    import ssl

    from webhook import simulator

    try:
        simulator_config = simulator.load_simulator_config(config)
    except simulator.SimulatorConfigError as exc:
        fail(str(exc).replace("\n", "\nerror: "))
    context = None
    if (tls_cert is None) != (tls_key is None):
        fail("--tls-cert and --tls-key go together")
    if tls_cert is not None and tls_key is not None:
        try:
            context = simulator.server_ssl_context(tls_cert, tls_key)
        except (OSError, ssl.SSLError) as exc:
            fail(f"cannot load the TLS certificate or key: {exc}")

    def announce(line: str) -> None:
        click.echo(line)
        sys.stdout.flush()  # tests wait for this line through a pipe

    try:
        asyncio.run(
            simulator.serve(
                simulator_config, host=host, port=port, ssl_context=context, announce=announce
            )
        )
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


# --- version, completion ------------------------------------------------------------------


@main.command("version", context_settings=CONTEXT_SETTINGS)
def version() -> None:
    """Print the version and the git revision nodelimits was built from.

    The revision is read from the checkout when run from one, else from what the build
    recorded (the image's REVISION build argument, pip's record of a git install), else
    "unknown".
    """
    from webhook import buildinfo

    click.echo(f"version: {buildinfo.version()}\nrevision: {buildinfo.revision()}")


COMPLETION_SHELLS = ("bash", "zsh", "fish")


@main.command("completion", context_settings=CONTEXT_SETTINGS)
@click.argument("shell", type=click.Choice(COMPLETION_SHELLS))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL.

    \b
    Examples:
      source <(nodelimits completion bash)                       # this shell; or ~/.bashrc
      nodelimits completion zsh > "${fpath[1]}/_nodelimits"      # zsh
      nodelimits completion fish > ~/.config/fish/completions/nodelimits.fish
    """
    from click.shell_completion import get_completion_class

    shell_class = get_completion_class(shell)
    if shell_class is None:  # click knows every shell of the Choice
        fail(f"no completion for {shell}")
    # The installed script is `nodelimits` whatever ran this (python -m webhook, a venv path).
    script = shell_class(main, {}, PROG_NAME, COMPLETE_VAR).source()
    click.echo(script, nl=not script.endswith("\n"))
