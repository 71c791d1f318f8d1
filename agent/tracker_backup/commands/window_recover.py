"""`tracker-backup window-recover`: start the tracker again if a killed run left it stopped."""

from __future__ import annotations

from tracker_backup.config import Config
from tracker_backup.errors import LockHeld
from tracker_backup.store import Store
from tracker_backup.window import WindowJournal


def register(subparsers) -> None:
    """Add the `window-recover` subcommand."""
    w = subparsers.add_parser("window-recover",
                              help="start the tracker again if a killed run left a maintenance "
                                   "window open (run by the unit's ExecStopPost=)")
    w.set_defaults(handler=lambda args, config, out: window_recover(config, out))


def window_recover(config: Config, out) -> int:
    """`tracker-backup window-recover`: restart a tracker left stopped by a killed run.

    Run by the unit's ExecStopPost= after every run; a no-op unless a
    maintenance window was left open.
    """
    store = Store(config.backup.path)
    if not store.path.is_dir():
        return 0
    journal = WindowJournal(store.window_journal_path)
    if journal.pending() is None:
        print("no maintenance window left open", file=out)
        return 0
    try:
        with store.lock("window-recover"):
            journal.recover()
    except LockHeld:
        print("another run holds the lock; it restarts the tracker itself", file=out)
        return 0
    print("tracker started again (a killed run had left it stopped)", file=out)
    return 0
