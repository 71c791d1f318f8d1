"""check-config looks at the database and the backup path, not only the syntax (item 2),
and prints durations the way they are written (item 12)."""

from __future__ import annotations

import sqlite3

import pytest

from conftest import Cli, write_config
from faults.harness import leave_free, mount_tmpfs, remount, unmount
from support.tracker_db import create_tracker_db
from tracker_backup.errors import EXIT_OK, EXIT_USAGE


def conf(tmp_path, db, backups=None, extra: str = "") -> Cli:
    return Cli(write_config(tmp_path / "tb.conf", f"""
[backup]
path = {backups or tmp_path / "backups"}
[sqlite]
database = {db}
{extra}
"""))


def test_a_database_that_does_not_exist_is_a_problem(tmp_path):
    db = tmp_path / "storage/tracker/lib/database/sqlite3.db"
    db.parent.mkdir(parents=True)
    proc = conf(tmp_path, db)("check-config")
    assert proc.returncode == EXIT_USAGE
    assert f"PROBLEM: [sqlite] database = {db}: does not exist" in proc.stdout, proc.stdout
    assert "configuration OK" not in proc.stdout


def test_a_database_path_naming_tracker_toml_is_not_a_sqlite_database(tmp_path):
    toml = tmp_path / "tracker.toml"
    toml.write_text("[core.database]\ndriver = \"sqlite3\"\n")
    proc = conf(tmp_path, toml)("check-config")
    assert proc.returncode == EXIT_USAGE
    assert f"PROBLEM: [sqlite] database = {toml}: not a SQLite database" in proc.stdout


def test_missing_tracker_tables_are_named(tmp_path):
    db = tmp_path / "other.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE torrents (id INTEGER PRIMARY KEY)")
    proc = conf(tmp_path, db)("check-config")
    assert proc.returncode == EXIT_USAGE
    assert "PROBLEM: [sqlite]" in proc.stdout and "keys, whitelist" in proc.stdout


def test_a_rollback_journal_database_is_ok_with_a_warning_saying_what_it_means(tmp_path):
    db = tmp_path / "tracker.db"
    create_tracker_db(db, rows=200, wal=False)
    proc = conf(tmp_path, db)("check-config")
    assert proc.returncode == EXIT_OK, proc.stdout + proc.stderr
    assert "journal mode delete" in proc.stdout
    assert "WARNING: [sqlite]" in proc.stdout and "max_lock" in proc.stdout
    assert "sqlite-wal" in proc.stdout
    assert "configuration OK" in proc.stdout


def test_a_wal_database_is_reported_as_such_and_opened_read_only(tmp_path):
    db = tmp_path / "tracker.db"
    create_tracker_db(db, rows=200, wal=True)
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = conf(tmp_path, db)("check-config")
    assert proc.returncode == EXIT_OK, proc.stdout + proc.stderr
    assert "journal mode wal" in proc.stdout and "WARNING" not in proc.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*before, "tb.conf"])


@pytest.fixture
def volume(tmp_path):
    path = tmp_path / "volume"
    mount_tmpfs(path, "256m")  # more than a run's estimate (twice the database + 64 MiB)
    yield path
    unmount(path)


def test_a_read_only_backup_path_is_a_problem_and_nothing_is_left_in_it(tmp_path, volume):
    db = tmp_path / "tracker.db"
    create_tracker_db(db, rows=200)
    remount(volume, "ro")
    proc = conf(tmp_path, db, backups=volume)("check-config")
    assert proc.returncode == EXIT_USAGE
    assert f"PROBLEM: [backup] path = {volume}: not writable" in proc.stdout, proc.stdout
    remount(volume, "rw")
    ok = conf(tmp_path, db, backups=volume)("check-config")
    assert ok.returncode == EXIT_OK, ok.stdout + ok.stderr
    assert f"[backup] path = {volume}: writable" in ok.stdout
    assert list(volume.iterdir()) == []  # the probe file was removed


def test_free_space_below_what_the_next_run_needs_is_said(tmp_path, volume):
    db = tmp_path / "tracker.db"
    create_tracker_db(db, rows=20000, pad=200)
    cli = conf(tmp_path, db, backups=volume)
    cli("run", check=True)
    leave_free(volume, 64 * 1024)
    proc = cli("check-config")
    # The need is an estimate with headroom (space.py): a warning, not a failed check.
    assert "free space: a run needs about" in proc.stdout
    assert f"WARNING: [backup] path = {volume}: not enough free space" in proc.stdout


def test_durations_are_printed_as_written_not_as_floats(tmp_path):
    db = tmp_path / "tracker.db"
    create_tracker_db(db, rows=100)
    cli = Cli(write_config(tmp_path / "tb.conf", f"""
[schedule]
randomized_delay = 10m
[sqlite]
database = {db}
max_lock = 2s
busy_timeout = 500ms
"""))
    out = cli("check-config", check=True).stdout
    assert "randomized_delay = 10m" in out and "max_lock = 2s" in out
    assert "busy_timeout = 500ms" in out
    assert "600.0" not in out and "2.0" not in out
