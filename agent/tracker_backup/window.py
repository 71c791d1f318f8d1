"""The maintenance window: stop the tracker, do one thing, always start it again.

One module for every caller (a backup's copy, an in-place restore's swap).
`maintenance_window` writes a durable note (the journal) before `stop_command`
and removes it only after `start_command` succeeded; `start_command` runs with
SIGTERM/SIGINT deferred, so a second `systemctl stop` cannot skip it. If the run is
killed in between (SIGKILL, power loss), the note survives, and whoever comes
next — the unit's ExecStopPost= (`tracker-backup window-recover`) or the next
run — starts the tracker again. Without it a killed run would leave the
tracker down until someone noticed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tracker_backup import procs
from tracker_backup.store import iso, utc_now, write_json_atomic

log = logging.getLogger(__name__)


class WindowJournal:
    """The note file in the store's state directory (None: no journal kept)."""

    def __init__(self, path: Path | None):
        self.path = path

    def opened(self, start_command: tuple[str, ...]) -> None:
        """Record, durably, that the tracker is about to be stopped."""
        if self.path is not None:
            write_json_atomic(self.path, {"start_command": list(start_command), "pid": os.getpid(),
                                          "since": iso(utc_now())})

    def closed(self) -> None:
        """The tracker was started again: forget the note."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)

    def pending(self) -> dict | None:
        """The note left by a run that stopped the tracker and never restarted it."""
        if self.path is None:
            return None
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {"start_command": [], "unreadable": True}
        return data if isinstance(data, dict) else {"start_command": []}

    def recover(self) -> bool:
        """Run the recorded start_command if a window was left open; True if it was."""
        note = self.pending()
        if note is None:
            return False
        command = [str(a) for a in note.get("start_command") or []]
        if not command:
            log.error("maintenance window left open (note %s unreadable): start the tracker by "
                      "hand, then delete the note", self.path)
            return True
        log.warning("a run stopped the tracker at %s and was killed before restarting it: "
                    "running start_command now", note.get("since", "?"))
        procs.run_command(command, what="[sqlite] start_command (recovery)")
        self.closed()
        return True


@dataclass
class Window:
    """An open window; `downtime` is set when it closes."""

    downtime: float = 0.0


@contextlib.contextmanager
def maintenance_window(stop_command: tuple[str, ...], start_command: tuple[str, ...],
                       journal: WindowJournal, *, section: str = "sqlite") -> Iterator[Window]:
    """Note durably, run stop_command, yield; then start_command always, and forget the note.

    If stop_command fails, start_command still runs (the tracker may be half
    stopped). If this process is killed inside, the note survives for
    `window-recover` (the unit's ExecStopPost=) or the next run.
    """
    window = Window()
    journal.opened(start_command)
    stopped_at = time.monotonic()
    try:
        procs.run_command(stop_command, what=f"[{section}] stop_command")
        yield window
    finally:
        try:
            # A second SIGTERM must not stop us from restarting the tracker.
            with signals_deferred():
                procs.run_command(start_command, what=f"[{section}] start_command")
            journal.closed()
        finally:
            window.downtime = time.monotonic() - stopped_at
            log.warning("%s: maintenance window: tracker was stopped for %.1fs", section,
                        window.downtime)


@contextlib.contextmanager
def signals_deferred():
    """Hold SIGTERM/SIGINT until the block ends (main thread only), then re-deliver them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {sig: signal.signal(sig, lambda s, f: received.append(s))
                for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in received:
            signal.raise_signal(sig)

