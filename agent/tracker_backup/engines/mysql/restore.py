"""Restore a stored mysqldump into a named database, or into a scratch one for the drill.

The dump is streamed (decompressed on the fly) through load.py, the one path
that loads a dump (credentials on stdin, `exec_prefix` in front, as for
backups). The database is created if missing; the dump drops and re-creates
each of its tables, and tables it does not hold are left alone.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from tracker_backup.artifacts import iter_decompressed
from tracker_backup.engines.contract import DrillResult, Part, RestoreAction, RestoreResult
from tracker_backup.engines.mysql.client import MysqlClient, quote_ident, quote_str, read_password
from tracker_backup.engines.mysql.config import MysqlConfig
from tracker_backup.engines.mysql.load import count_rows, load_dump, unlogged_sql
from tracker_backup.engines.mysql.scratch import restore_check
from tracker_backup.engines.mysql.server import MysqlServer
from tracker_backup.errors import RunFailed

log = logging.getLogger(__name__)


@dataclass
class MysqlRestored(RestoreResult):
    """A dump loaded into a database (bytes = SQL read), with the row counts checked."""

    row_counts: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        return f"mysql -> database {self.target} ({self.bytes} bytes of SQL)"


def with_account(cfg: MysqlConfig, user: str | None, password_file: Path | None) -> MysqlConfig:
    """The [mysql] connection with another account (restoring needs more than SELECT)."""
    changes: dict = {}
    if user:
        changes["user"] = user
    if password_file:
        changes["password_file"] = password_file
    return dataclasses.replace(cfg, **changes) if changes else cfg


def _client(cfg: MysqlConfig) -> MysqlClient:
    return MysqlClient(cfg, read_password(cfg))


def _tables(client: MysqlClient, database: str) -> list[str]:
    rows = client.query("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = "
                        f"{quote_str(database)} ORDER BY TABLE_NAME", what="list tables")
    return [r[0] for r in rows]


def _where(cfg: MysqlConfig) -> str:
    where = str(cfg.socket) if cfg.socket else f"{cfg.host}:{cfg.port}" if cfg.host else \
        "the default socket"
    return where + (f" via {' '.join(cfg.exec_prefix)}" if cfg.exec_prefix else "")


def plan(part: Part, cfg: MysqlConfig, database: str) -> RestoreAction:
    """Connect; say which existing tables the dump would drop and re-create."""
    client = _client(cfg)
    existing = _tables(client, database)
    dumped = list(part.source.get("tables", []))
    action = RestoreAction("mysql", f"database {database} on {_where(cfg)}")
    action.replaces = [f"table {database}.{t} (dropped, re-created from the dump)"
                       for t in dumped if t in existing]
    if not existing:
        action.notes.append(f"database {database} is created if missing")
    others = [t for t in existing if t not in dumped]
    if others:
        action.notes.append(f"left as they are (not in the dump): {', '.join(others)}")
    counts = part.source.get("row_counts") or {}
    if counts:
        action.notes.append("rows: " + ", ".join(f"{t} {n}" for t, n in sorted(counts.items())))
    return action


def restore(src: Path, part: Part, cfg: MysqlConfig, database: str, *,
            unlogged: bool = False) -> MysqlRestored:
    """Load the dump into `database` (created if missing); check tables and row counts.

    unlogged (scratch databases only): the load stays out of the server's binary log.
    """
    t0 = time.monotonic()
    client = _client(cfg)
    tools = client.tools()
    art = part.artifacts[0]
    client.query(unlogged_sql(f"CREATE DATABASE IF NOT EXISTS {quote_ident(database)} "
                              "CHARACTER SET utf8mb4", unlogged),
                 what=f"create database {database}")
    counter = {"bytes": 0}

    def payload():
        for chunk in iter_decompressed(src, art.compression):
            counter["bytes"] += len(chunk)
            yield chunk

    log.info("mysql: loading %s into database %s on %s", art.path, database, _where(cfg))
    code, err = load_dump(client, tools, database, payload(), unlogged=unlogged)
    if code != 0:
        raise RunFailed(f"mysql: loading the dump into database {database} failed (status "
                        f"{code}): {err.strip()[-2000:] or '(no output)'}")
    expected = part.source.get("row_counts") or {}
    counts = count_rows(client, database, expected)
    if expected and counts != expected:
        raise RunFailed(f"mysql: database {database}: row counts {counts} differ from the "
                        f"manifest's {expected}")
    return MysqlRestored("mysql", database, counter["bytes"], round(time.monotonic() - t0, 3),
                         row_counts=counts)


def drill(src: Path, part: Part, cfg: MysqlConfig) -> DrillResult:
    """Load into a scratch database, compare tables and counts, drop it (the backup's check)."""
    art = part.artifacts[0]
    expected = part.source.get("row_counts") or {}
    check = restore_check(MysqlServer(cfg), src, art.compression, expected)
    counts = check.get("restored_row_counts", {})
    return DrillResult(f"loaded into scratch database {check.get('scratch_database')} (dropped), "
                       "row counts match the manifest ("
                       + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + ")",
                       {"row_counts": counts, "scratch_database": check.get("scratch_database")})
