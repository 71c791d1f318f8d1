"""Following the server's binlog for ever: restarts, backoff, and what each stop means.

`BinlogFollower` owns the streaming tool (stream.py) and turns what it reads
into archive entries (meta, data), see docs/format.md "Binlog archive". It
knows the resume point at all times: the end of the last complete
transaction it handed out. When the tool stops it says why and, unless the
reason is permanent, starts a new one from that point after a backoff
(1 s doubling to 30 s): a server restart, a container restart or a lost
connection therefore cost neither a gap nor a duplicate. Permanent reasons
(the binlog purged, binary logging off, privileges missing) are kept in
`problem` for the archiver's journal and status, and no retry is made until
`reset()`.
"""

from __future__ import annotations

import logging
import time

from tracker_backup.engines.mysql.binlog.events import BinlogError, FileStart, Transaction
from tracker_backup.engines.mysql.binlog.stream import BinlogStream
from tracker_backup.engines.mysql.client import MysqlClient, Tools
from tracker_backup.errors import RunFailed

log = logging.getLogger(__name__)

BACKOFF_FIRST, BACKOFF_MAX = 1.0, 30.0
PERMANENT = ("purged", "off", "denied")


def file_entry(item: FileStart) -> tuple[dict, bytes]:
    return ({"kind": "file", "file": item.file, "server_version": item.server_version,
             "end": item.end}, item.format_event)


def trx_entry(item: Transaction) -> tuple[dict, bytes]:
    return ({"kind": "trx", "file": item.file, "pos": item.pos, "end": item.end,
             "ts": item.timestamp, "gtid": item.gtid, "events": item.events}, item.data)


class BinlogFollower:
    """Streams from (file, pos) on; poll() returns new entries; survives the tool's exits."""

    def __init__(self, client: MysqlClient, tools: Tools, server_id: int, file: str, pos: int,
                 archived_file: str | None = None):
        self.client, self.tools, self.server_id = client, tools, server_id
        self.file, self.pos = file, pos
        self.archived_file = archived_file  # the binlog whose FORMAT_DESCRIPTION is archived last
        self.stream: BinlogStream | None = None
        self.problem: tuple[str, str] | None = None  # (kind, sentence) of a permanent stop
        self.last_error: str | None = None  # the last transient stop, for status
        self.restarts = 0  # after the tool stopped on its own
        self.runs = 0  # tool runs started
        self.connected_since: float | None = None
        self.last_event_time: float | None = None
        self._backoff = 0.0
        self._next_try = 0.0

    def reset(self, file: str, pos: int, archived_file: str | None) -> None:
        """Continue from another point (after a rewind or in a new generation)."""
        self.stop()
        self.file, self.pos, self.archived_file = file, pos, archived_file
        self.problem = None
        self._backoff = self._next_try = 0.0

    def poll(self, timeout: float = 0.0) -> list[tuple[dict, bytes]]:
        """Entries (meta, data) completed since the last call, in order."""
        if self.problem is not None:
            return []
        if self.stream is None:
            if time.monotonic() < self._next_try:
                return []
            self._start()
            if self.stream is None:
                return []
        stream = self.stream
        entries: list[tuple[dict, bytes]] = []
        try:
            items = stream.read(timeout)
        except BinlogError as exc:
            # A damaged stream: drop this tool run, resume from the last good transaction.
            self._stopped(f"the binlog stream was unreadable: {exc}")
            return entries
        for item in items:
            if isinstance(item, FileStart):
                if item.file != self.archived_file:
                    entries.append(file_entry(item))
                    self.archived_file = item.file
                if self.file != item.file:
                    self.file, self.pos = item.file, item.end
            else:
                entries.append(trx_entry(item))
                self.file, self.pos = item.file, item.end
                self.last_event_time = time.time()
                self._backoff = 0.0  # flowing again: the next failure backs off from 1 s
        if stream.needs_restart():
            log.info("mysql: binlog rotated to %s: restarting the binlog tool for the next files",
                     stream.parser.next_file)
            self.stop()
            return entries
        code = stream.exited()
        if code is not None:
            kind, sentence = stream.failure()
            if kind in PERMANENT:
                self.problem = (kind, sentence)
                log.error("mysql: binlog archiving stopped: %s", sentence)
                self.stop()
            else:
                self._stopped(f"the binlog tool exited with status {code}: {sentence}")
        return entries

    def _start(self) -> None:
        try:
            self.stream = BinlogStream(self.client, self.tools, self.file, self.pos, self.server_id)
        except RunFailed as exc:
            self._stopped(str(exc))
            return
        self.connected_since = time.time()
        self.runs += 1
        log.info("mysql: streaming the binlog from %s:%d", self.file, self.pos)

    def _stopped(self, why: str) -> None:
        self.last_error = why
        self.restarts += 1
        self.stop()
        self._backoff = min(BACKOFF_MAX, max(BACKOFF_FIRST, self._backoff * 2))
        self._next_try = time.monotonic() + self._backoff
        log.warning("mysql: %s; resuming from %s:%d in %.0f s", why, self.file, self.pos, self._backoff)

    def stop(self) -> None:
        if self.stream is not None:
            self.stream.stop()
            self.stream = None
            self.connected_since = None
