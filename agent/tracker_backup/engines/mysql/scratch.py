"""Scratch databases: the restore check of `verify = restore` and the drill load a dump there.

Named SCRATCH_PREFIX + time + random, dropped afterwards; ones a killed run
left behind are dropped by the next (the store lock is held, so none is in use).
A scratch database's load is kept out of the server's binary log when the account
may (`unlogged_loads`): else the continuous archiver streams the whole load (minutes
of lag after a big one) and replicas apply it.
"""

from __future__ import annotations

import logging
import secrets
import time
from pathlib import Path

from tracker_backup.artifacts import iter_decompressed
from tracker_backup.engines.mysql.client import MysqlClient, Tools, quote_ident, quote_str
from tracker_backup.engines.mysql.load import count_rows, load_dump, unlogged_sql
from tracker_backup.engines.mysql.server import MysqlServer
from tracker_backup.errors import SourceError

log = logging.getLogger(__name__)

SCRATCH_PREFIX = "tracker_backup_verify_"  # GRANT ALL ON `tracker\_backup\_verify\_%`.* ...


def scratch_name() -> str:
    """A database name no one else uses: prefix, time, random."""
    return f"{SCRATCH_PREFIX}{time.strftime('%Y%m%d%H%M%S', time.gmtime())}_{secrets.token_hex(4)}"

# What lets a session SET sql_log_bin, per flavour (the grant the warning names).
SQL_LOG_BIN_PRIVILEGE = {"mariadb": "BINLOG ADMIN", "mysql": "SESSION_VARIABLES_ADMIN"}


def unlogged_loads(client: MysqlClient) -> bool:
    """True if this account may keep its scratch loads out of the server's binary log.

    `SET SESSION sql_log_bin=0` needs MariaDB's BINLOG ADMIN (SUPER before 10.5.2) or
    MySQL's SESSION_VARIABLES_ADMIN / SYSTEM_VARIABLES_ADMIN (or SUPER). Without it the
    loads are logged as before, with a warning naming the grant (none when the server
    does not log at all).
    """
    try:
        client.query(unlogged_sql("SELECT 1", True), what="keep the scratch load out of the binlog")
        return True
    except SourceError as exc:
        denied = str(exc)
    try:
        rows = client.query("SELECT @@GLOBAL.log_bin", what="is binary logging on")
        if rows and rows[0][0] in ("0", "OFF"):
            return False  # nothing is logged: nothing to keep out
    except SourceError:
        pass
    flavour = client.tools().flavour
    log.warning("mysql: the scratch database's load goes into the server's binary log (the "
                "binlog archiver streams it too, and lags while it does; replicas apply it): "
                "the account may not SET sql_log_bin (%s). To keep it out: GRANT %s ON *.* TO "
                "the backup account", denied[-300:], SQL_LOG_BIN_PRIVILEGE.get(flavour, "SUPER"))
    return False


def create_scratch(client: MysqlClient, name: str, unlogged: bool) -> None:
    client.query(unlogged_sql(f"CREATE DATABASE {quote_ident(name)} CHARACTER SET utf8mb4",
                              unlogged), what="create scratch database")


def drop_scratch(client: MysqlClient, name: str, unlogged: bool = False) -> None:
    """DROP DATABASE IF EXISTS (errors logged: the next run's stale sweep retries)."""
    try:
        client.query(unlogged_sql(f"DROP DATABASE IF EXISTS {quote_ident(name)}", unlogged),
                     what="drop scratch")
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
        drop_scratch(server.client, row[0])

def restore_check(server: MysqlServer, path: Path, compression: str, expected: dict[str, int],
                  tools: Tools | None = None) -> dict:
    """Load the dump into a scratch database, compare tables and row counts, drop it."""
    tools = tools or server.client.tools()
    drop_stale_scratch(server)
    name = scratch_name()
    started = time.monotonic()
    unlogged = unlogged_loads(server.client)
    create_scratch(server.client, name, unlogged)
    try:
        code, err = load_dump(server.client, tools, name, iter_decompressed(path, compression),
                              unlogged=unlogged)
        if code != 0:
            raise SourceError(f"mysql: restore drill: loading the dump into scratch database "
                              f"{name} failed (status {code}): {err[-2000:] or '(no output)'}")
        rows = server.client.query(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE' "
            f"AND TABLE_SCHEMA = {quote_str(name)} ORDER BY TABLE_NAME", what="list restored")
        restored = [r[0] for r in rows]
        counts = count_rows(server.client, name, restored, what="count restored")
    finally:
        drop_scratch(server.client, name, unlogged)
    problems = []
    if sorted(restored) != sorted(expected):
        problems.append(f"tables {sorted(restored)} differ from the dump's {sorted(expected)}")
    diffs = {t: (counts.get(t), n) for t, n in expected.items() if counts.get(t) != n}
    if diffs:
        problems.append("row counts differ (restored, dumped): "
                        + ", ".join(f"{t}: {a} vs {b}" for t, (a, b) in diffs.items()))
    if problems:
        raise SourceError(f"mysql: restore drill of the dump failed: {'; '.join(problems)}")
    return {"level": "restore", "result": "ok", "scratch_database": name, "unlogged": unlogged,
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
        drop_scratch(server.client, name)
        pattern = SCRATCH_PREFIX.replace("_", "\\_") + "%"
        return (f"verify = restore needs a scratch database, and {exc}. Fix: GRANT ALL "
                f"PRIVILEGES ON `{pattern}`.* TO {grantee};")
    return None

