"""Reading a raw binary log stream (what `mysqlbinlog --raw` writes) into whole transactions.

The stream is one or more binlog files back to back, as the dump tool writes
them: each starts with the magic b"\\xfebin" and a FORMAT_DESCRIPTION event,
then events, and (except the last) ends with a ROTATE event naming the next
file. Every event has the v4 header (19 bytes, little-endian):

    timestamp u32 | type u8 | server_id u32 | event_size u32 | log_pos u32 | flags u16

`log_pos` is the position just after the event in the *server's* file, which
is what a resume point is; offsets in our stream do not matter. With
binlog_checksum = CRC32 (both servers' default) each event ends with the
CRC32 of the rest of it, which is checked here.

The parser yields `Transaction`s: every event from the end of the previous
transaction up to and including the event that commits this one (XID, a
COMMIT/ROLLBACK query, a standalone DDL query, an XA PREPARE, or a MySQL
TRANSACTION_PAYLOAD), so an archive built from them never holds part of a
transaction and has no gap: each starts where the previous ended. New files
are reported as `FileStart` (name, FORMAT_DESCRIPTION bytes). MariaDB
(GTID_EVENT 162, FL_STANDALONE) and MySQL 8 (GTID_LOG_EVENT 33,
ANONYMOUS_GTID 34, BEGIN query) spell transaction starts differently; both
are handled. Pure Python, no I/O: unit-testable on recorded bytes.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

MAGIC = b"\xfebin"
HEADER = struct.Struct("<IBIIIH")
HEADER_LEN = HEADER.size  # 19
ARTIFICIAL = 0x20  # LOG_EVENT_ARTIFICIAL_F: made up by the dump thread, not in any file
MAX_EVENT = 1 << 30  # max_allowed_packet's ceiling: anything larger is a broken stream

# Event types (MySQL's numbering; MariaDB's own start at 160).
QUERY, STOP, ROTATE, FORMAT_DESCRIPTION, XID = 2, 3, 4, 15, 16
HEARTBEAT, GTID_MYSQL, ANONYMOUS_GTID, PREVIOUS_GTIDS = 27, 33, 34, 35
XA_PREPARE, TRANSACTION_PAYLOAD, HEARTBEAT_V2 = 38, 40, 41
ANNOTATE_ROWS, BINLOG_CHECKPOINT, GTID_MARIADB, GTID_LIST, START_ENCRYPTION = 160, 161, 162, 163, 164
MARIADB_FL_STANDALONE = 0x01
CHECKSUM_OFF, CHECKSUM_CRC32 = 0, 1
QUERY_POST_HEADER = 13  # thread_id u32, exec_time u32, db_len u8, error_code u16, status_len u16


class BinlogError(Exception):
    """The stream is not a binlog, is damaged, or uses what this reader cannot archive."""


@dataclass(frozen=True)
class FileStart:
    """A new binlog file begins: its name and FORMAT_DESCRIPTION event (header included)."""

    file: str
    format_event: bytes
    server_version: str
    checksum: bool
    end: int  # log_pos after the FORMAT_DESCRIPTION event (where events may start)


@dataclass
class Transaction:
    """One committed transaction and the non-transactional events just before it."""

    file: str
    pos: int  # server position of its first event (= previous transaction's end)
    end: int  # server position after its commit event: the next resume point
    timestamp: int  # the commit event's timestamp (server clock, POSIX seconds)
    data: bytes  # the events, back to back, exactly as in the server's file
    gtid: str | None = None
    events: int = 0
    kinds: list[int] = field(default_factory=list)


def _query_text(body: bytes, post_header: int) -> bytes:
    if len(body) < post_header:
        raise BinlogError("QUERY event shorter than its post-header")
    db_len = body[8]
    status_len = struct.unpack_from("<H", body, 11)[0]
    start = post_header + status_len + db_len + 1
    return body[start:]


class StreamParser:
    """Feed raw stream bytes in any chunks; take FileStart/Transaction items as they complete.

    `file` names the binlog the stream starts in (the tool was asked for it);
    `pos` is where in that file (4 = its start), so the first transaction's
    `pos` is known even when the dump thread starts mid-file.
    """

    def __init__(self, file: str, pos: int = 4):
        self.file = file
        self.pos = pos  # end of the last complete transaction (the resume point)
        self._buf = bytearray()
        self._expect_magic = True
        self._checksum = False
        self._post_header: dict[int, int] = {}
        self._server_version = ""
        self._events: list[bytes] = []
        self._kinds: list[int] = []
        self._in_trx = False
        self._gtid: str | None = None
        self._pending_standalone = False
        self._last_end = pos
        self.next_file: str | None = None  # named by the last ROTATE, not yet started

    @property
    def in_transaction(self) -> bool:
        """True while the stream stopped inside a transaction (its events are held back)."""
        return bool(self._events) and (self._in_trx or self._pending_standalone)

    def feed(self, chunk: bytes) -> Iterator[FileStart | Transaction]:
        """Parse `chunk`; yield every file start and complete transaction it finishes."""
        self._buf += chunk
        buf = self._buf
        off = 0
        try:
            while True:
                if self._expect_magic:
                    if len(buf) - off < 4:
                        break
                    if buf[off:off + 4] != MAGIC:
                        raise BinlogError(f"expected a binlog file header (\\xfebin) for "
                                          f"{self.next_file or self.file}, got {bytes(buf[off:off + 4])!r}")
                    off += 4
                    self._expect_magic = False
                    continue
                if len(buf) - off < HEADER_LEN:
                    break
                if buf[off:off + 4] == MAGIC:
                    # A new file without a ROTATE before it: the server stopped or crashed and
                    # the dump thread moved on to the next file (its fake ROTATE is not written).
                    if len(buf) - off < 4 + HEADER_LEN:
                        break
                    if buf[off + 8] == FORMAT_DESCRIPTION:
                        self._switch_file(self.next_file or _successor(self.file))
                        continue
                ts, etype, server_id, size, log_pos, flags = HEADER.unpack_from(buf, off)
                if size < HEADER_LEN or size > MAX_EVENT:
                    raise BinlogError(f"{self.file}: impossible event size {size} after position "
                                      f"{self._last_end}: the stream is damaged")
                if len(buf) - off < size:
                    break
                event = bytes(buf[off:off + size])
                off += size
                item = self._event(event, ts, etype, server_id, log_pos, flags)
                if item is not None:
                    yield item
        finally:
            del buf[:off]

    # -- one event ---------------------------------------------------------------
    def _event(self, event: bytes, ts: int, etype: int, server_id: int, log_pos: int,
               flags: int) -> FileStart | Transaction | None:
        if etype == FORMAT_DESCRIPTION:
            return self._format_description(event, log_pos)
        body = self._check(event, etype)
        if flags & ARTIFICIAL or log_pos == 0 or etype in (HEARTBEAT, HEARTBEAT_V2):
            return None  # made up by the dump thread: in no file, nothing to keep
        if etype == ROTATE:
            # End of this file: what follows is the next file, from its header.
            self._switch_file(body[8:].decode("utf-8", "replace"))
            return None
        if etype == START_ENCRYPTION:
            raise BinlogError(f"{self.file}: the binary log is encrypted (encrypt_binlog = ON): "
                              "it cannot be archived as raw events; turn encrypt_binlog off")
        self._events.append(event)
        self._kinds.append(etype)
        self._last_end = log_pos
        done = False
        if etype == GTID_MARIADB:
            seq_no, domain = struct.unpack_from("<QI", body, 0)
            self._gtid = f"{domain}-{server_id}-{seq_no}"
            standalone = bool(body[12] & MARIADB_FL_STANDALONE)
            self._in_trx = not standalone
            self._pending_standalone = standalone
        elif etype in (GTID_MYSQL, ANONYMOUS_GTID):
            sid, gno = body[1:17], struct.unpack_from("<q", body, 17)[0]
            if etype == GTID_MYSQL:
                h = sid.hex()
                self._gtid = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}:{gno}"
            self._pending_standalone = True  # a BEGIN query turns it into a transaction
        elif etype == QUERY:
            text = _query_text(body, self._post_header.get(QUERY, QUERY_POST_HEADER)).strip().upper()
            if text == b"BEGIN" or text.startswith(b"XA START"):
                self._in_trx, self._pending_standalone = True, False
            elif self._in_trx:
                done = text in (b"COMMIT", b"ROLLBACK") or text.startswith(b"XA END")
            else:
                done = True  # DDL and other statements outside a transaction commit alone
        elif etype in (XID, XA_PREPARE, TRANSACTION_PAYLOAD):
            done = True
        # Anything else (table maps, row events, GTID lists, checkpoints, STOP) belongs to
        # the transaction that is open or comes next.
        if not done:
            return None
        trx = Transaction(self.file, self.pos, log_pos, ts, b"".join(self._events), self._gtid,
                          len(self._events), self._kinds)
        self.pos = log_pos
        self._events, self._kinds = [], []
        self._in_trx = self._pending_standalone = False
        self._gtid = None
        return trx

    def _switch_file(self, name: str) -> None:
        """The current file ended: the next bytes are `name`'s header."""
        if self._in_trx:
            raise BinlogError(f"{self.file} ended inside a transaction (after position {self._last_end})")
        self.next_file = name
        self._expect_magic = True
        # Events after the last commit (GTID list, checkpoint, STOP) belong to no transaction.
        self._events, self._kinds = [], []
        self._pending_standalone = False

    def _check(self, event: bytes, etype: int) -> bytes:
        """The event's body (after the header, without the checksum), its CRC32 checked."""
        if not self._checksum:
            return event[HEADER_LEN:]
        want = struct.unpack_from("<I", event, len(event) - 4)[0]
        if zlib.crc32(event[:-4]) != want:
            raise BinlogError(f"{self.file}: event of type {etype} after position {self._last_end} "
                              "fails its CRC32 checksum: the stream is damaged")
        return event[HEADER_LEN:-4]

    def _format_description(self, event: bytes, log_pos: int) -> FileStart | None:
        body = event[HEADER_LEN:]
        if len(body) < 2 + 50 + 4 + 1:
            raise BinlogError("FORMAT_DESCRIPTION event too short")
        version = body[2:52].split(b"\0", 1)[0].decode("ascii", "replace")
        header_len = body[56]
        if header_len != HEADER_LEN:
            raise BinlogError(f"binlog event header length {header_len}, expected 19 (binlog v4)")
        # Post-header lengths per type, then (since 5.6.1) the checksum algorithm, and the
        # event's CRC32 when that algorithm is CRC32.
        rest = body[57:]
        crc_ok = zlib.crc32(event[:-4]) == struct.unpack_from("<I", event, len(event) - 4)[0]
        if len(rest) >= 5 and rest[-5] == CHECKSUM_CRC32:
            if not crc_ok:
                raise BinlogError("FORMAT_DESCRIPTION event fails its CRC32 checksum")
            self._checksum, lengths = True, rest[:-5]
        elif rest and rest[-1] == CHECKSUM_OFF:
            self._checksum, lengths = False, rest[:-1]
        else:
            raise BinlogError(f"binlog checksum algorithm {rest[-5] if len(rest) >= 5 else '?'} is "
                              "not supported (binlog_checksum must be CRC32 or NONE)")
        self._post_header = {i + 1: n for i, n in enumerate(lengths)}
        self._server_version = version
        if self.next_file is not None:  # the file the last ROTATE named
            self.file, self.next_file = self.next_file, None
            self.pos = 4
        if log_pos:  # 0 when the dump thread re-sends it for a start mid-file
            self.pos = max(self.pos, log_pos)
            self._last_end = self.pos
        return FileStart(self.file, event, version, self._checksum, log_pos or 4)


def _successor(name: str) -> str:
    base, index = file_index(name)
    return file_name(base, index + 1, len(name) - len(base) - 1)


def file_index(name: str) -> tuple[str, int]:
    """("binlog", 3) from "binlog.000003"."""
    base, _, number = name.rpartition(".")
    if not base or not number.isdigit():
        raise BinlogError(f"binlog file name {name!r} is not BASE.NNNNNN")
    return base, int(number)


def file_name(base: str, index: int, width: int = 6) -> str:
    return f"{base}.{index:0{width}d}"
