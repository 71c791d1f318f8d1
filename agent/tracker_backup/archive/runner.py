"""The long-running archive loop: drives every configured `Archiver` until SIGTERM.

Cadence (see protocol.py): poll every `poll_interval`, publish every
`publish_interval`, maintain every `maintain_interval`. A failed publish or
maintenance step (backup path full, I/O error) stalls only that archiver:
it rewinds to its last published entry, logs loudly, and is retried with
backoff (1 s doubling to 30 s) until the backup path works again.

systemd: READY=1 once every archiver is open, WATCHDOG=1 at half of
WATCHDOG_USEC while the loop turns, STATUS= one line per archiver (every 5 s),
STOPPING=1 on SIGTERM; every minute a journal entry per archiver with
ARCHIVE_SEQ=, ARCHIVE_LAG_SEC=, ARCHIVE_GENERATION=, ARCHIVE_STALLED=. Without
systemd these are no-ops.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from tracker_backup import systemd
from tracker_backup.archive.protocol import Archiver

log = logging.getLogger(__name__)

BACKOFF_START = 1.0
BACKOFF_MAX = 30.0
PROGRESS_EVERY = 60.0  # seconds between progress entries in the journal


@dataclass
class _Slot:
    archiver: Archiver
    next_publish: float = 0.0
    next_maintain: float = 0.0
    retry_at: float = 0.0
    backoff: float = 0.0
    stalled: str | None = None


class Runner:
    """Runs archivers in one thread until `stop` is set (SIGTERM/SIGINT set it)."""

    def __init__(self, archivers: list[Archiver], *, poll_interval: float = 0.01,
                 publish_interval: float = 0.5, maintain_interval: float = 1.0,
                 status_interval: float = 5.0,
                 notify: Callable[..., bool] = systemd.notify,
                 on_status: Callable[[], None] | None = None):
        self.slots = [_Slot(a) for a in archivers]
        self.poll_interval = poll_interval
        self.publish_interval = publish_interval
        self.maintain_interval = maintain_interval
        self.status_interval = status_interval
        self.notify = notify
        self.on_status = on_status  # e.g. rewrite the metrics textfile, every status_interval
        self.stop = threading.Event()
        usec = os.environ.get("WATCHDOG_USEC", "")
        self.watchdog_interval = int(usec) / 2e6 if usec.isdigit() and int(usec) > 0 else None

    def install_signal_handlers(self) -> None:
        def on_signal(signum, frame):
            self.stop.set()
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    def run(self) -> None:
        """Open all archivers, loop until stopped, close them (publishing what is pending)."""
        opened: list[Archiver] = []
        try:
            for slot in self.slots:
                slot.archiver.open()
                opened.append(slot.archiver)
            self.notify(READY=1, STATUS=self.status_line())
            log.info("archiving %s", ", ".join(s.archiver.source for s in self.slots))
            self._loop()
        finally:
            self.notify(STOPPING=1, STATUS="stopping: publishing what is pending")
            for archiver in reversed(opened):
                try:
                    archiver.close()
                except Exception as exc:  # noqa: BLE001 - close every archiver, report each
                    log.error("%s: closing the archiver failed: %s", archiver.source, exc)

    def status_line(self) -> str:
        lines = []
        for slot in self.slots:
            st = slot.archiver.status()
            st.stalled = slot.stalled or st.stalled
            lines.append(st.line())
        return "; ".join(lines) or "no archivers"

    def _log_progress(self) -> None:
        """One journal entry per archiver with its position and lag (every minute)."""
        for slot in self.slots:
            st = slot.archiver.status()
            log.info("%s", st.line(), extra={"journal": {
                "ARCHIVE_SOURCE": st.source, "ARCHIVE_GENERATION": st.generation or "",
                "ARCHIVE_SEQ": st.last_seq, "ARCHIVE_LAG_SEC": f"{st.lag_seconds:.3f}",
                "ARCHIVE_PENDING": st.pending, "ARCHIVE_STALLED": 1 if slot.stalled else 0,
                **{f"ARCHIVE_{k.upper()}": v for k, v in st.extra.items()}}})

    def _loop(self) -> None:
        next_status = next_watchdog = 0.0
        next_progress = time.monotonic() + PROGRESS_EVERY
        while not self.stop.is_set():
            now = time.monotonic()
            for slot in self.slots:
                self._turn(slot, now)
            if now >= next_status:
                self.notify(STATUS=self.status_line())
                if self.on_status is not None:
                    self.on_status()
                next_status = now + self.status_interval
            if now >= next_progress:
                self._log_progress()
                next_progress = now + PROGRESS_EVERY
            if self.watchdog_interval and now >= next_watchdog:
                self.notify(WATCHDOG=1)
                next_watchdog = now + self.watchdog_interval
            self.stop.wait(self.poll_interval)

    def _turn(self, slot: _Slot, now: float) -> None:
        a = slot.archiver
        if slot.stalled and now < slot.retry_at:
            with contextlib.suppress(OSError):
                a.observe()
            return
        try:
            a.poll()
            if slot.stalled or now >= slot.next_publish:
                a.publish()
                slot.next_publish = now + self.publish_interval
            if slot.stalled or now >= slot.next_maintain:
                a.maintain()
                slot.next_maintain = now + self.maintain_interval
        except OSError as exc:
            self._stall(slot, now, exc)
            return
        if slot.stalled:
            log.warning("%s: archiving resumed after: %s", a.source, slot.stalled,
                        extra={"journal": {"ARCHIVE_SOURCE": a.source, "ARCHIVE_STALLED": 0}})
            slot.stalled, slot.backoff = None, 0.0

    def _stall(self, slot: _Slot, now: float, exc: OSError) -> None:
        a = slot.archiver
        try:
            a.rewind()
        except Exception as err:  # noqa: BLE001 - the stall is reported either way
            log.error("%s: rewind after a failed write failed too: %s", a.source, err)
        slot.backoff = min(BACKOFF_MAX, slot.backoff * 2 if slot.backoff else BACKOFF_START)
        slot.retry_at = now + slot.backoff
        what = f"{exc.strerror or exc} ({exc.filename})" if exc.filename else f"{exc.strerror or exc}"
        slot.stalled = f"writing to the backup path failed: {what}"
        log.error("%s: archive STALLED, nothing published, retry in %.0f s: %s", a.source,
                  slot.backoff, what,
                  extra={"journal": {"ARCHIVE_SOURCE": a.source, "ARCHIVE_STALLED": 1,
                                     "ERRNO": exc.errno or 0}})
        self.notify(STATUS=f"{a.source}: STALLED: {what}")
