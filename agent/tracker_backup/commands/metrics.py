"""`tracker-backup metrics`: backup health in the Prometheus text format, on stdout.

The same text `[metrics] textfile` receives after every run, prune, verify and
drill (docs/monitoring.md); read-only, no lock, so it works while a run holds one.
"""

from __future__ import annotations

import argparse

from tracker_backup import metrics
from tracker_backup.config import Config
from tracker_backup.errors import EXIT_OK


def register(subparsers) -> None:
    """Add the `metrics` subcommand."""
    p = subparsers.add_parser(
        "metrics", help="backup health as Prometheus metrics (text format) on stdout",
        description="Print the metrics [metrics] textfile receives (docs/monitoring.md).")
    p.set_defaults(handler=_handler)


def _handler(args: argparse.Namespace, config: Config, out) -> int:  # noqa: ARG001
    out.write(metrics.render_text(config))
    return EXIT_OK
