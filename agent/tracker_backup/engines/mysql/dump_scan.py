"""Reading a mysqldump/mariadb-dump stream as it passes: structure, rows, binlog position.

The scanner sees the exact bytes that are stored, so what it records (tables,
rows per table, binary log coordinates, the completion trailer) describes the
dump itself: the one consistent snapshot mysqldump read in its transaction,
not a second look at a database that kept changing.

Row counting relies on how mysqldump writes data: one `INSERT INTO `t` VALUES`
statement holds rows `(...)` separated by `,` (MySQL: on one line; recent
MariaDB: one row per line); strings are quoted with every quote, backslash and
newline inside them escaped, so no string spans lines, and once strings are
removed a row boundary is the only place `),(` can occur.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_STRING = re.compile(rb"'[^'\\]*(?:\\.[^'\\]*)*'", re.S)
_CREATE_TABLE = re.compile(rb"^CREATE TABLE `((?:[^`]|``)+)`")
_CREATE_VIEW = re.compile(rb"^/\*!50001 CREATE .*?VIEW `((?:[^`]|``)+)`")
# A column list appears with generated or invisible columns (or --complete-insert).
_INSERT = re.compile(rb"^INSERT INTO `((?:[^`]|``)+)`(?: \((?:`(?:[^`]|``)*`,?)*\))? VALUES ?", re.M)
_BINLOG = re.compile(rb"^-- CHANGE (?:MASTER|REPLICATION SOURCE) TO (?:MASTER|SOURCE)_LOG_FILE="
                     rb"'([^']+)', (?:MASTER|SOURCE)_LOG_POS=(\d+)")
_GTID = re.compile(rb"^-- SET GLOBAL gtid_slave_pos='([^']*)'")
_HEADER = re.compile(rb"^-- (MariaDB|MySQL) dump ")
TRAILER = b"-- Dump completed"


def _name(raw: bytes) -> str:
    return raw.decode("utf-8", "replace").replace("``", "`")


class DumpScanner:
    """Feed it the dump's bytes in any chunks; read what it found afterwards.

    Work is done per block of whole lines, not per line: inside INSERT
    statements (nearly all of a dump) rows are counted with a few C-level
    calls per block, so scanning keeps up with mysqldump.
    """

    def __init__(self) -> None:
        self.tables: list[str] = []
        self.views: list[str] = []
        self.row_counts: dict[str, int] = {}
        self.binlog: dict | None = None
        self.gtid: str | None = None
        self.header: str | None = None
        self.last_line = b""
        self._carry = b""
        self._insert: str | None = None  # table whose INSERT statement is open

    def feed(self, chunk: bytes) -> None:
        """Scan the next bytes of the dump."""
        data = self._carry + chunk
        cut = data.rfind(b"\n") + 1
        self._carry = data[cut:]
        if cut:
            self._block(data[:cut])

    def finish(self) -> None:
        """Scan what is left after the last newline."""
        if self._carry:
            self._block(self._carry + b"\n")
            self._carry = b""

    def _block(self, data: bytes) -> None:
        """Scan whole lines (`data` ends with a newline)."""
        tail = data.rstrip()
        if tail:
            self.last_line = tail[tail.rfind(b"\n") + 1:]
        pos, size = 0, len(data)
        while pos < size:
            if self._insert is not None:
                # No raw newline can be inside a string, so the first ");\n" ends the statement.
                end = data.find(b");\n", pos)
                stop = size if end == -1 else end + 3
                rows = data[pos:stop]
                # "),\n" cannot be inside a string (newlines are escaped there); "),(" can,
                # so strings are removed first, only when "),(" occurs at all (MySQL's layout).
                between = rows.count(b"),(")
                if between and b"'" in rows:
                    between = _STRING.sub(b"", rows).count(b"),(")
                found = between + rows.count(b"),\n")
                if end != -1:
                    found += 1
                self.row_counts[self._insert] += found
                if end != -1:
                    self._insert = None
                pos = stop
                continue
            m = _INSERT.search(data, pos)
            stop = m.start() if m else size
            for line in data[pos:stop].split(b"\n"):
                self._other(line)
            if m is None:
                return
            self._insert = _name(m.group(1))
            self.row_counts.setdefault(self._insert, 0)
            pos = m.end()

    def _other(self, line: bytes) -> None:
        if not line or line[0] not in b"-C/":
            return
        if m := _CREATE_TABLE.match(line):
            name = _name(m.group(1))
            if name not in self.tables:
                self.tables.append(name)
                self.row_counts.setdefault(name, 0)
        elif m := _CREATE_VIEW.match(line):
            name = _name(m.group(1))
            if name not in self.views:
                self.views.append(name)
        elif self.header is None and (m := _HEADER.match(line)):
            self.header = m.group(1).decode()
        elif m := _BINLOG.match(line):
            self.binlog = {"file": m.group(1).decode("utf-8", "replace"),
                           "position": int(m.group(2))}
        elif m := _GTID.match(line):
            self.gtid = m.group(1).decode("utf-8", "replace")

    @property
    def completed(self) -> bool:
        """True if the dump ends with mysqldump's completion trailer."""
        return self.last_line.startswith(TRAILER) and self._insert is None

    def problems(self, expected_tables: Iterable[str] = ()) -> list[str]:
        """What makes this dump incomplete or malformed (empty = fine)."""
        found = []
        if self.header is None:
            found.append("no '-- MariaDB dump' / '-- MySQL dump' header: not a mysqldump file")
        if not self.completed:
            found.append("no '-- Dump completed' trailer: the dump stopped part-way")
        missing = [t for t in expected_tables if t not in self.tables]
        if missing:
            found.append(f"no CREATE TABLE for {', '.join(missing)}")
        return found


def scan(chunks: Iterable[bytes]) -> DumpScanner:
    """Scan a whole dump."""
    scanner = DumpScanner()
    for chunk in chunks:
        scanner.feed(chunk)
    scanner.finish()
    return scanner
