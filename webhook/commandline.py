"""What every ``nodelimits`` command shares: exit codes, the one-line error, loading the
settings, and the options several commands take (``--config``, the limits source)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from webhook.config import ConfigError, Settings, load_settings

__all__ = [
    "CONTEXT_SETTINGS",
    "EXIT_ERROR",
    "EXIT_OK",
    "EXIT_REJECTED",
    "config_option",
    "fail",
    "judging_settings",
    "limits_source_options",
    "settings_from",
]

EXIT_OK, EXIT_REJECTED, EXIT_ERROR = 0, 1, 2

_Command = TypeVar("_Command", bound=Callable[..., Any])

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def fail(message: str) -> NoReturn:
    """Print a one-line error and exit 2."""
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_ERROR)


def settings_from(config: Path | None, **overrides: Any) -> Settings:
    try:
        return load_settings(config, **overrides)
    except ConfigError as exc:
        for line in exc.problems:
            click.echo(f"error: {line}", err=True)
        sys.exit(EXIT_ERROR)


def judging_settings(config: Path | None, limits_file: Path | None, live: bool) -> Settings:
    """The settings of a command that judges objects, reading limits from exactly one of
    ``--limits-file`` or ``--live``; a limits file goes through the same cache as the live
    API and ``serve`` (``platform.limits_file``)."""
    if live == (limits_file is not None):
        fail("give exactly one of --limits-file FILE or --live")
    settings = settings_from(config)
    if limits_file is None:
        return settings
    platform = settings.platform.model_copy(update={"limits_file": limits_file})
    return settings.model_copy(update={"platform": platform})


config_option = click.option(
    "--config",
    "config",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="NODELIMITS_CONFIG_FILE",
    help="YAML settings file (same keys as the NODELIMITS_* environment).",
)


def limits_source_options(command: _Command) -> _Command:
    """``--limits-file`` and ``--live``: where a command that judges objects reads limits."""
    command = click.option(
        "--live", is_flag=True, help="Read the limits from the platform's Open API."
    )(command)
    return click.option(
        "--limits-file",
        type=click.Path(path_type=Path, dir_okay=False),
        help="Per-node limits of the resource groups (YAML or JSON; see "
        "`nodelimits limits --all`).",
    )(command)
