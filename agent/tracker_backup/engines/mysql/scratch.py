"""Scratch databases: the restore check of `verify = restore` and the drill load a dump there.

Named SCRATCH_PREFIX + time + random, dropped afterwards; ones a killed run
left behind are dropped by the next (the store lock is held, so none is in use).
"""

from __future__ import annotations

import logging
import secrets
import time
from pathlib import Path

from tracker_backup.artifacts import iter_decompressed
from tracker_backup.engines.mysql.client import Tools, quote_ident, quote_str
from tracker_backup.engines.mysql.load import count_rows, load_dump
from tracker_backup.engines.mysql.server import MysqlServer
from tracker_backup.errors import SourceError

log = logging.getLogger(__name__)

SCRATCH_PREFIX = "tracker_backup_verify_"  # GRANT ALL ON `tracker\_backup\_verify\_%`.* ...


def scratch_name() -> str:
    """A database name no one else uses: prefix, time, random."""
    return f"{SCRATCH_PREFIX}{time.strftime('%Y%m%d%H%M%S', time.gmtime())}_{secrets.token_hex(4)}"

def drop_scratch(server: MysqlServer, name: str) -> None:
    try:
        server.client.query(f"DROP DATABASE IF EXISTS {quote_ident(name)}", what="drop scratch")
    except SourceError as exc:
        log.error("mysql: could not drop scratch database %s: %s", name, exc)

def drop_stale_scratch(server: MysqlServer) -> None:
    """Drop scratch databases a killed run or drill left behind (each a whole copy).

    Callers hold the store lock, so no scratch database of ours is in use.
    """
    pattern = SCRATCH_PREFIX.replace("_", "\\_") + "%"
    try:
        rows = server.client.query(f"SHOW DATABASES LIKE {quote_str(pattern)}",
                                 what="list scratch databases")
    except SourceError as exc:
        log.warning("mysql: could not look for stale scratch databases: %s", exc)
        return
    for row in rows:
        log.warning("mysql: dropping scratch database %s left by an interrupted run", row[0])
        drop_scratch(server, row[0])

def restore_check(server: MysqlServer, path: Path, compression: str, expected: dict[str, int],
                  tools: Tools | None = None) -> dict:
    """Load the dump into a scratch database, compare tables and row counts, drop it."""
    tools = tools or server.client.tools()
    drop_stale_scratch(server)
    name = scratch_name()
    started = time.monotonic()
    server.client.query(f"CREATE DATABASE {quote_ident(name)} CHARACTER SET utf8mb4",
                        what="create scratch database")
    try:
        code, err = load_dump(server.client, tools, name, iter_decompressed(path, compression))
        if code != 0:
            raise SourceError(f"mysql: restore drill: loading the dump into scratch database "
                              f"{name} failed (status {code}): {err[-2000:] or '(no output)'}")
        rows = server.client.query(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE' "
            f"AND TABLE_SCHEMA = {quote_str(name)} ORDER BY TABLE_NAME", what="list restored")
        restored = [r[0] for r in rows]
        counts = count_rows(server.client, name, restored, what="count restored")
    finally:
        drop_scratch(server, name)
    problems = []
    if sorted(restored) != sorted(expected):
        problems.append(f"tables {sorted(restored)} differ from the dump's {sorted(expected)}")
    diffs = {t: (counts.get(t), n) for t, n in expected.items() if counts.get(t) != n}
    if diffs:
        problems.append("row counts differ (restored, dumped): "
                        + ", ".join(f"{t}: {a} vs {b}" for t, (a, b) in diffs.items()))
    if problems:
        raise SourceError(f"mysql: restore drill of the dump failed: {'; '.join(problems)}")
    return {"level": "restore", "result": "ok", "scratch_database": name,
            "restored_row_counts": counts, "seconds": round(time.monotonic() - started, 3)}


def probe_scratch(server: MysqlServer, grantee: str) -> str | None:
    """Try what a restore drill does in a scratch database; None if allowed."""
    name = scratch_name()
    try:
        server.client.query(
            f"CREATE DATABASE {quote_ident(name)}; USE {quote_ident(name)};\n"
            "CREATE TABLE t (id INT PRIMARY KEY); LOCK TABLES t WRITE;\n"
            "ALTER TABLE t DISABLE KEYS; INSERT INTO t VALUES (1); UNLOCK TABLES;\n"
            f"DROP DATABASE {quote_ident(name)};", what="probe scratch database")
    except SourceError as exc:
        drop_scratch(server, name)
        pattern = SCRATCH_PREFIX.replace("_", "\\_") + "%"
        return (f"verify = restore needs a scratch database, and {exc}. Fix: GRANT ALL "
                f"PRIVILEGES ON `{pattern}`.* TO {grantee};")
    return None

