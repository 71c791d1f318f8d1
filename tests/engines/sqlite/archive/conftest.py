"""Fixtures for the SQLite archiver tests (helpers in tests/support/archive_kit.py)."""

from __future__ import annotations

import sqlite3

import pytest

from support.archive_kit import ArchiverProc, LoggedWriter
from support.tracker_db import METRIC, create_tracker_db


@pytest.fixture
def tracker(tmp_path):
    """(db path, initial metric): a WAL tracker DB with 5000 torrents."""
    (tmp_path / "db").mkdir()
    db = create_tracker_db(tmp_path / "db" / "tracker.db", rows=5000)
    conn = sqlite3.connect(db)
    metric = conn.execute("SELECT value FROM torrent_aggregate_metrics WHERE metric_name = ?",
                          (METRIC,)).fetchone()[0]
    conn.close()
    return db, metric


@pytest.fixture
def procs(tmp_path):
    """Factory for writers and archivers; everything still running is stopped after the test."""
    started: list = []

    class Factory:
        def writer(self, db, rate=300.0, existing=5000, user=None) -> LoggedWriter:
            w = LoggedWriter(db, tmp_path, rate, existing, len(started), user)
            started.append(w)
            return w

        def archiver(self, db, backup, *extra) -> ArchiverProc:
            a = ArchiverProc(db, backup, tmp_path / "archiver.log", *extra)
            started.append(a)
            return a

    yield Factory()
    for p in reversed(started):
        if p.proc.poll() is None:
            p.kill()


