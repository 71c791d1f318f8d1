"""Streaming the server's binary log with the flavour's own tool, through exec_prefix.

    mariadb-binlog | mysqlbinlog --read-from-remote-server --raw --stop-never
        --start-position=POS FILE

runs where the other client tools run (on this host, or inside the `mysql`
container through `docker compose exec -T mysql`), with the password in an
option file on fd 3 exactly as for mysqldump (see the client module). In
--raw mode the tool writes each binlog file to a file named after it; a small
POSIX sh prelude (RAW_TO_STDOUT) first makes those names symlinks to the
tool's own standard output (/proc/self/fd/1) in a private directory, so the
raw bytes come back through the same pipe `docker compose exec` gives us, and
nothing is stored in the container. The names cover SYMLINKS consecutive
files from the start file; when the stream rotates beyond them the archiver
restarts the tool from where it got to (`needs_restart`).

The tool does not reconnect by itself: when it exits (server restart,
container restart, network, purged binlog) `BinlogStream.failure()` says why
in words, and the archiver starts a new one from the end of the last complete
transaction, so nothing is skipped and nothing is read twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import select
import struct
import subprocess
import termios
import threading
import zlib
from collections.abc import Iterator

from tracker_backup import procs
from tracker_backup.engines.mysql.binlog.events import FileStart, StreamParser, Transaction, file_index
from tracker_backup.engines.mysql.client import OPTION_FILE_ARG, WRAPPER, MysqlClient, Tools

log = logging.getLogger(__name__)

SYMLINKS = 64  # binlog files one tool run can follow before it is restarted
READ_CHUNK = 1 << 20
RAW_TO_STDOUT = (
    'd="${TMPDIR:-/tmp}/tracker-backup-binlog-$1"; base=$2; i=$3; end=$(($3 + $4)); shift 4\n'
    'rm -rf "$d" && mkdir -m 0700 "$d" && cd "$d" || exit 113\n'
    'while [ "$i" -lt "$end" ]; do\n'
    '  ln -s /proc/self/fd/1 "$(printf \'%s.%06d\' "$base" "$i")" || exit 113\n'
    '  i=$((i + 1))\n'
    'done\n'
    # The tool must not outlive us: `docker exec` does not end a process when
    # its client goes away, and a forgotten dump thread keeps the server from
    # purging binlogs. The agent holds our stdin open for as long as it wants
    # the stream; at end of file (agent stopped or killed) the watcher ends it.
    'exec 5<&0\n'
    '"$@" </dev/null 5<&- &\n'
    't=$!\n'
    '{ while IFS= read -r _; do :; done; kill "$t" 2>/dev/null; } <&5 >/dev/null 2>&1 &\n'
    'w=$!\n'
    'exec 5<&-\n'
    'wait "$t"; rc=$?\n'
    'kill "$w" 2>/dev/null\n'
    'exit "$rc"\n'
)
STOP_GRACE = 5.0  # seconds the tool gets to end after its stdin closed, before it is killed
# What the tools print when the server no longer has the binlog asked for (error 1236).
PURGED_MARKERS = ("Could not find first log file name in binary log index file",
                  "purged binary logs", "purged required binary logs", "Could not open log file",
                  "binlog truncated")
DENIED_MARKERS = ("access denied", "command denied")
OFF_MARKERS = ("Binary log is not open", "binary logging is not enabled", "log_bin")


def binlog_tool(tools: Tools) -> str:
    """The flavour's binlog tool (MariaDB ships both names; MySQL only mysqlbinlog)."""
    return "mariadb-binlog" if tools.flavour == "mariadb" else "mysqlbinlog"


def connection_id_flag(tools: Tools, server_id: int) -> str:
    """The replica server_id the tool announces, in this flavour's spelling.

    A fixed id per archiver lets the server end a dead predecessor's dump
    thread when a new one connects. MariaDB and MySQL 5.7 spell it
    --stop-never-slave-server-id; MySQL 8.0 added --connection-server-id and
    8.4 dropped the old name.
    """
    if tools.flavour == "mysql" and tools.version >= (8, 0, 0):
        return f"--connection-server-id={server_id}"
    return f"--stop-never-slave-server-id={server_id}"


def stream_args(tools: Tools, file: str, pos: int, server_id: int) -> list[str]:
    """The binlog tool's options to stream raw events from (file, pos) for ever."""
    return ["--read-from-remote-server", "--raw", "--stop-never", connection_id_flag(tools, server_id),
            f"--start-position={pos}", file]


def archiver_server_id(key: str) -> int:
    """A stable replica server_id for one archive (2**31 and up: clear of real servers' ids)."""
    return (1 << 31) + zlib.crc32(key.encode()) % (1 << 30)


def classify_failure(stderr: str) -> tuple[str, str]:
    """(kind, sentence) for why the binlog tool stopped: purged, denied, off, or gone."""
    low = stderr.lower()
    if any(m.lower() in low for m in PURGED_MARKERS):
        return "purged", ("the server no longer has the binary log the archive needs "
                          f"(purged: binlog_expire_logs_seconds / expire_logs_days): {stderr[-400:]}")
    if any(m.lower() in low for m in OFF_MARKERS):
        return "off", ("binary logging is off on the server (server setting log_bin): "
                       f"{stderr[-400:]}")
    if any(m in low for m in DENIED_MARKERS):
        return "denied", ("the account may not read the binary log (it needs REPLICATION SLAVE; "
                          f"MySQL 8.0.22+: REPLICATION REPLICA): {stderr[-400:]}")
    return "gone", stderr[-400:] or "(no output)"


def _unread(fd: int) -> int:
    """Bytes waiting in the pipe `fd` (FIONREAD)."""
    try:
        return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
    except OSError:
        return 0


class BinlogStream:
    """One run of the binlog tool from (file, pos), parsed as it arrives."""

    def __init__(self, client: MysqlClient, tools: Tools, file: str, pos: int, server_id: int):
        self.client, self.tools = client, tools
        self.start_file, self.start_pos = file, pos
        self.parser = StreamParser(file, pos)
        self.base, self.first_index = file_index(file)
        self.argv = [*client.cfg.exec_prefix, "sh", "-c", WRAPPER, "sh",
                     "sh", "-c", RAW_TO_STDOUT, "raw-to-stdout", str(server_id), self.base,
                     str(self.first_index), str(SYMLINKS),
                     binlog_tool(tools), OPTION_FILE_ARG, *client.connection_args(),
                     *stream_args(tools, file, pos, server_id)]
        self._hold = threading.Event()
        self.child = procs.StreamingChild(self.argv, what=f"mysql: {binlog_tool(tools)}",
                                          feed=client.feed(_held_open(self._hold)))
        os.set_blocking(self.child.stdout.fileno(), False)
        self.bytes = 0

    def read(self, timeout: float = 0.0) -> list[FileStart | Transaction]:
        """Whatever complete items arrived (waits up to `timeout` for the first bytes)."""
        fd = self.child.stdout.fileno()
        items: list[FileStart | Transaction] = []
        ready, _, _ = select.select([fd], [], [], timeout)
        while ready:
            try:
                chunk = os.read(fd, READ_CHUNK)
            except BlockingIOError:
                break
            if not chunk:
                break
            self.bytes += len(chunk)
            items.extend(self.parser.feed(chunk))
            ready, _, _ = select.select([fd], [], [], 0)
        return items

    def exited(self) -> int | None:
        """The tool's exit status once it ended and its output is drained, else None."""
        code = self.child.proc.poll()
        if code is None or _unread(self.child.stdout.fileno()):
            return None
        return code

    def needs_restart(self) -> bool:
        """True when the stream rotated to a file the tool has no output name for."""
        nxt = self.parser.next_file
        if nxt is None:
            return False
        base, index = file_index(nxt)
        return base != self.base or index >= self.first_index + SYMLINKS - 1

    def failure(self) -> tuple[str, str]:
        """(kind, sentence) for why the tool stopped (see classify_failure)."""
        return classify_failure(self.child.stderr_text())

    def stop(self) -> None:
        """Stop the tool, wherever it runs: close its stdin (the prelude's watcher ends it,
        inside the container too), give it STOP_GRACE seconds, then kill what is left here."""
        self._hold.set()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.child.proc.wait(timeout=STOP_GRACE)
        self.child.kill()
        self.child.close()


def _held_open(until: threading.Event) -> Iterator[bytes]:
    """No payload, but the tool's stdin stays open until `until` is set (see RAW_TO_STDOUT)."""
    until.wait()
    yield from ()
