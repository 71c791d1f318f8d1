"""Integrity check of a database copy: PRAGMA integrity/quick_check, tables, row counts."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from tracker_backup.engines.sqlite.header import uri


def check_database(path: Path, level: str, required_tables: tuple[str, ...],
                   on_open: Callable[[sqlite3.Connection], None] | None = None) -> dict:
    """Integrity-check a database copy; return check result, tables and row counts.

    Opened immutable and read-only: nothing is created beside the copy and the
    check sees exactly the bytes that are stored. `on_open` receives the
    connection, so another thread can interrupt() a long check.
    """
    conn = sqlite3.connect(uri(path, mode="ro", immutable="1"), uri=True, isolation_level=None,
                           check_same_thread=False)
    if on_open is not None:
        on_open(conn)
    try:
        return check_connection(conn, level, required_tables)
    finally:
        conn.close()


def check_connection(conn: sqlite3.Connection, level: str,
                     required_tables: tuple[str, ...]) -> dict:
    """The check of `check_database` on an open connection (e.g. one pinning a snapshot)."""
    pragma = "integrity_check" if level == "full" else "quick_check"
    started = time.monotonic()
    try:
        rows = [r[0] for r in conn.execute(f"PRAGMA {pragma}")]
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "ORDER BY name")]
        counts = {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
    except sqlite3.DatabaseError as exc:
        rows, tables, counts = [f"cannot read the copy: {exc}"], [], {}
    ok = rows == ["ok"]
    missing = [t for t in required_tables if t not in tables]
    return {
        "level": level,
        "pragma": pragma,
        "result": "ok" if ok and not missing else "failed",
        # integrity_check rows can span lines ("*** in database main ***\nPage 18: ..."):
        # one line each, so the log and the error message stay one line.
        "messages": [] if ok else [" ".join(str(r).split()) for r in rows[:10]],
        "missing_tables": missing,
        "row_counts": counts,
        "seconds": round(time.monotonic() - started, 3),
    }


def stored_copy_problems(check: dict, expected_counts: dict, prefix: str,
                         copy: str = "") -> list[str]:
    """What `check_database` found wrong with a stored copy, as verify reports it:
    the PRAGMA's messages (or the missing tables), then row counts that differ from
    the manifest's `expected_counts` (none recorded: not compared)."""
    problems = []
    if check["result"] != "ok":
        problems.append(f"{prefix}: PRAGMA {check['pragma']}{copy} failed: "
                        + "; ".join(check["messages"][:3] or
                                    [f"missing tables {check['missing_tables']}"]))
    if expected_counts and check["row_counts"] != expected_counts:
        problems.append(f"{prefix}: row counts {check['row_counts']} differ from the manifest's "
                        f"{expected_counts}")
    return problems
