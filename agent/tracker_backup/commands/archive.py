"""`tracker-backup archive`: run every configured engine's continuous archiver until SIGTERM.

The ExecStart= of tracker-backup-archive.service (Type=notify). Engines offer
their archiver through the contract (Engine.archiver); the runner
(archive/runner.py) drives them all in one loop. Exit 0 after SIGTERM, 2 when
nothing is configured for continuous archiving or a source cannot be archived
(a rollback-journal SQLite database), 3 when another archiver holds a source.
"""

from __future__ import annotations

import argparse

from tracker_backup import engines
from tracker_backup.archive.runner import Runner
from tracker_backup.config import Config
from tracker_backup.errors import EXIT_OK, UsageError
from tracker_backup.metrics.live import LiveMetrics
from tracker_backup.store import Store


def register(subparsers) -> None:
    """Add the `archive` subcommand."""
    p = subparsers.add_parser(
        "archive", help="continuous archive: ship every commit into the backup path until "
                        "SIGTERM (the tracker-backup-archive service)",
        description="Runs in the foreground until SIGTERM: follows each source configured for "
                    "continuous archiving ([sqlite] or [mysql] continuous = yes) and publishes its "
                    "committed changes into <backup path>/archive/ within about a second.")
    p.set_defaults(handler=handler)


def archivers(config: Config) -> list:
    """Every configured engine's archiver (engines that offer none, or are not enabled, skip)."""
    return [a for e in engines.configured(config) if (a := e.archiver(config)) is not None]


def handler(args: argparse.Namespace, config: Config, out) -> int:
    found = archivers(config)
    if not found:
        raise UsageError(f"{config.file}: no source is configured for continuous archiving "
                         "(set [sqlite] or [mysql] continuous = yes)")
    Store(config.backup.path).prepare(require_mountpoint=config.backup.require_mountpoint)
    live = LiveMetrics(config)  # [metrics]: the textfile every few seconds, /metrics if listen
    try:
        runner = Runner(found, on_status=live.update)
        runner.install_signal_handlers()
        runner.run()
        live.update()  # the state the archivers left at close
    finally:
        live.close()
    return EXIT_OK
