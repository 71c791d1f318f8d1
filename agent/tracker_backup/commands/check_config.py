"""`tracker-backup check-config`: print the effective configuration, then each engine's checks."""

from __future__ import annotations

import argparse

from tracker_backup import engines
from tracker_backup.config import Config, render_config
from tracker_backup.errors import EXIT_OK, ConfigError


def register(subparsers) -> None:
    """Add the `check-config` subcommand."""
    c = subparsers.add_parser("check-config", help="validate the configuration and print it")
    c.set_defaults(handler=_handler)


def _handler(args: argparse.Namespace, config: Config, out) -> int:
    return check_config(config, out)


def check_config(config: Config, out) -> int:
    """Print the effective configuration, then run each configured engine's preflight.

    e.g. MySQL: connect and list missing privileges with the GRANT that fixes them.
    """
    out.write(render_config(config))
    problems = []
    for engine in engines.configured(config):
        problems += [f"[{engine.kind}] {p}" for p in engine.preflight(config)]
    for problem in problems:
        print(f"PROBLEM: {problem}", file=out)
    if problems:
        raise ConfigError(f"{config.file}: {len(problems)} problem(s) found by the checks above")
    print(f"; {config.file}: configuration OK", file=out)
    return EXIT_OK
