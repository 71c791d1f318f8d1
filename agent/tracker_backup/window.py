"""The maintenance-window journal: a durable note that the tracker is stopped.

A run that stops the tracker (`[sqlite] stop_command`) writes this note before
stopping it and removes it only after `start_command` succeeded. If the run is
killed in between (SIGKILL, power loss), the note survives, and whoever comes
next — the unit's ExecStopPost= (`tracker-backup window-recover`) or the next
run — starts the tracker again. Without it a killed run would leave the
tracker down until someone noticed.
"""

from __future__ import annotations

import json
import logging
import os
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
