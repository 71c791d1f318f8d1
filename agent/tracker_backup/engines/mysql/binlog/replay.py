"""Replaying archived binlog transactions into a database, up to a point in time.

    raw events --stdin--> [exec_prefix] env TZ=UTC mysqlbinlog|mariadb-binlog
                              --database=SRC [--rewrite-db=SRC->TARGET] --stop-datetime=T -
               --stdout--> [exec_prefix] sh -c WRAPPER sh mysql|mariadb --binary-mode ...

The decoder is the flavour's own binlog tool reading a raw binlog from its
standard input ("-"): we hand it the magic, each file's FORMAT_DESCRIPTION
event and the archived transactions, already cut at the last transaction
committed before T; `--stop-datetime` (in UTC, hence TZ=UTC: the tool reads
it in local time) says the same to the tool. Its SQL goes to the plain client
through the usual credential path (option file on fd 3). `--database` keeps
only the tracker database's events (the binlog holds the whole server);
`--rewrite-db` sends them to another database (a drill's scratch one, or
`restore --database NAME`). Row events are rewritten; statements that name a
database explicitly (`db.table`) are not - the tracker never writes those.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from tracker_backup import procs
from tracker_backup.engines.mysql.binlog.events import MAGIC
from tracker_backup.engines.mysql.binlog.stream import binlog_tool
from tracker_backup.engines.mysql.client import MysqlClient, Tools
from tracker_backup.engines.mysql.load import unlogged_payload
from tracker_backup.errors import RunFailed

log = logging.getLogger(__name__)
CHUNK = 1 << 20


@dataclass
class ReplayPiece:
    """One item of a replay: a file's FORMAT_DESCRIPTION event, or a transaction's events."""

    kind: str  # "file" | "trx"
    data: bytes
    timestamp: int = 0  # a transaction's commit time (server clock)


def decoder_args(tools: Tools, source_db: str, target_db: str, stop: float | None) -> list[str]:
    """The binlog tool's options to turn raw events from stdin into SQL for the client."""
    args = ["env", "TZ=UTC", binlog_tool(tools), f"--database={source_db}"]
    if target_db != source_db:
        args.append(f"--rewrite-db={source_db}->{target_db}")
    if stop is not None:
        args.append("--stop-datetime=" + datetime.fromtimestamp(stop, UTC).strftime("%Y-%m-%d %H:%M:%S"))
    if tools.flavour == "mysql":
        # Re-apply the events as new transactions: with their original GTIDs a server that
        # has executed them before would skip them silently.
        args.append("--skip-gtids")
    else:
        # MariaDB 10.8+ refuses a stream whose GTID state does not start at 0-0-0.
        args.append("--loose-skip-gtid-strict-mode")
    args.append("-")
    return args


def raw_stream(pieces: Iterable[ReplayPiece], stop: float | None, counter: dict) -> Iterator[bytes]:
    """MAGIC, then the pieces; transactions committed at or after `stop` end it."""
    yield MAGIC
    buf: list[bytes] = []
    size = 0
    for piece in pieces:
        if piece.kind == "trx":
            if stop is not None and piece.timestamp >= stop:
                break
            counter["transactions"] += 1
            counter["last_timestamp"] = piece.timestamp
        buf.append(piece.data)
        size += len(piece.data)
        counter["bytes"] += len(piece.data)
        if size >= CHUNK:
            yield b"".join(buf)
            buf, size = [], 0
    if buf:
        yield b"".join(buf)


def replay(client: MysqlClient, tools: Tools, pieces: Iterable[ReplayPiece], *, source_db: str,
           target_db: str, stop: float | None, unlogged: bool = False) -> dict:
    """Decode and apply `pieces` to `target_db` up to (not including) time `stop`
    (unlogged: out of the server's binary log, for a scratch database)."""
    t0 = time.monotonic()
    counter = {"transactions": 0, "bytes": 0, "last_timestamp": None}
    prefix = list(client.cfg.exec_prefix)
    decoder_argv = [*prefix, *decoder_args(tools, source_db, target_db, stop)]
    loader_argv = client.argv(tools.client, "--batch", "--binary-mode",
                              "--default-character-set=utf8mb4", f"--database={target_db}")
    with procs.StreamingChild(decoder_argv, what=f"mysql: {binlog_tool(tools)} (decode)",
                              feed=raw_stream(pieces, stop, counter)) as decoder:
        sql = iter(lambda: decoder.stdout.read(CHUNK), b"")
        code, _out, err = procs.run_with_input(loader_argv, what=f"mysql: replay into {target_db}",
                                               feed=client.feed(unlogged_payload(sql, unlogged)),
                                               timeout=86400)
        decoded = decoder.wait(timeout=600)
        if decoded != 0:
            raise RunFailed(f"mysql: decoding the archived binlog failed (status {decoded}): "
                            f"{decoder.stderr_text() or '(no output)'}")
    if code != 0:
        raise RunFailed(f"mysql: replaying the binlog into {target_db} failed (status {code}): "
                        f"{err.strip()[-2000:] or '(no output)'}")
    return {**counter, "seconds": round(time.monotonic() - t0, 3)}
