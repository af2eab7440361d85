"""The ``nodelimits`` command: serve | check | limits | simulate.

This is the only place that maps exceptions to exit codes: 0 = every checked object
fits, 1 = at least one rejected, 2 = usage, input, configuration or platform error.
Errors are printed as ``error: <message>``, never as a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import click

from webhook.config import ConfigError, Settings, load_settings

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
# (policy-core issue)

# --- serve ------------------------------------------------------------------------------
# (admission issue)

# --- limits, simulate -------------------------------------------------------------------
# (platform issue)
