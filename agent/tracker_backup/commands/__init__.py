"""The command layer: one module per verb, each with register(subparsers).

A command's register() adds its parser and sets `handler(args, config, out) -> exit code`;
cli.py only parses and calls the handler. Engines add their own commands through
the contract (Engine.commands(), e.g. sqlite-wal); `register_all` is the one path.
"""

from __future__ import annotations

from tracker_backup import engines
from tracker_backup.commands import (
    archive,
    check_config,
    drill,
    export,
    init,
    list,  # noqa: A004 - the verb's name
    metrics,
    prune,
    restore,
    run,
    schedule,
    status,
    verify,
    window_recover,
)

# In the order `tracker-backup --help` lists them.
CORE = (init, run, list, verify, prune, status, metrics, check_config, window_recover, restore,
        drill, export, schedule, archive)


def register_all(subparsers) -> None:
    """Every command: the core verbs, then each engine's own."""
    for module in CORE:
        module.register(subparsers)
    for engine in engines.ENGINES:
        for register in engine.commands():
            register(subparsers)
