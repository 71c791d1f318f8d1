"""Logging setup and structured events.

Under systemd, records go to journald with fields (MESSAGE_ID=, SNAPSHOT=,
BYTES=, DURATION_SEC=, ...); elsewhere they are plain lines on stderr.
"""

from __future__ import annotations

import logging
import os
import sys

from tracker_backup import systemd

LOGGER = logging.getLogger("tracker_backup")


def setup_logging(verbose: bool = False, quiet: bool = False) -> None:
    """Configure the package logger once per process."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    for handler in list(LOGGER.handlers):
        LOGGER.removeHandler(handler)
    if systemd.stderr_is_journal() and os.path.exists(systemd.JOURNAL_SOCKET):
        handler: logging.Handler = systemd.JournalHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("tracker-backup: %(levelname)s: %(message)s"))
    LOGGER.addHandler(handler)
    LOGGER.setLevel(level)
    LOGGER.propagate = False


def event(kind: str, message: str, *, error: bool = False, **fields: object) -> None:
    """Log one outcome with a fixed MESSAGE_ID and structured journal fields."""
    journal = {"MESSAGE_ID": systemd.MESSAGE_IDS[kind], "TRACKER_BACKUP_EVENT": kind}
    journal.update({k.upper(): v for k, v in fields.items() if v is not None})
    LOGGER.log(logging.ERROR if error else logging.INFO, message, extra={"journal": journal})


def progress(text: str) -> None:
    """Progress for `systemctl status` (STATUS=) and the debug log."""
    systemd.notify(STATUS=text)
    LOGGER.debug("%s", text)
