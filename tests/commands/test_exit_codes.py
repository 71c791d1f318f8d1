"""Documented non-zero exits that monitoring and scripts rely on (issue 15, item 7)."""

from __future__ import annotations

import json

from tracker_backup.errors import EXIT_OK, EXIT_RUN_FAILED

DB_REL = "tracker/lib/database/tracker.db"


def test_status_exits_1_after_a_failed_run_and_names_the_failure_in_warnings(cli, storage):
    cli("run", check=True)
    db = storage / DB_REL
    db.rename(db.with_name("moved.db"))  # the next run fails: the database is gone
    failed = cli("run")
    assert failed.returncode == EXIT_RUN_FAILED
    proc = cli("status", "--json")
    assert proc.returncode == EXIT_RUN_FAILED, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    assert data["last_run"]["result"] == "failed"
    assert any(w.startswith("last run failed") and str(db) in w for w in data["warnings"]), data
    text = cli("status")
    assert text.returncode == EXIT_RUN_FAILED and "WARNING: last run failed" in text.stdout
    # Fixed and run again: healthy, exit 0.
    db.with_name("moved.db").rename(db)
    cli("run", check=True)
    assert cli("status", "--json").returncode == EXIT_OK


def test_restore_dry_run_exits_1_when_it_prints_blocked(cli, storage, start_writer):
    cli("run", check=True)
    writer = start_writer(storage / DB_REL, rate=50)
    proc = cli("restore", "--kind", "sqlite", "--dry-run")
    assert f"BLOCKED: pid {writer.proc.pid}" in proc.stdout
    assert "dry run: nothing was changed" in proc.stdout
    assert proc.returncode == EXIT_RUN_FAILED, proc.stdout + proc.stderr
    writer.stop()
    assert cli("restore", "--kind", "sqlite", "--dry-run").returncode == EXIT_OK
