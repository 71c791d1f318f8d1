"""The SQLite archiver under a real writer: PITR exactness, disk-loss RPO, kills, checkpoints,
restarts, replacement, WAL bounded, rollback journal refused."""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
import time

import pytest

from support.archive_kit import applied_prefix, restore_at
from tracker_backup.archive.store import SourceArchive
from tracker_backup.engines.sqlite.archive.archiver import SqliteArchiver
from tracker_backup.errors import UsageError

SLACK = 0.5  # seconds: archiver's poll + publish on this loaded 2-core machine


def test_restore_at_a_time_holds_exactly_the_commits_up_to_it(tmp_path, tracker, procs):
    db, metric0 = tracker
    backup = tmp_path / "backup"
    arch = procs.archiver(db, backup)
    arch.wait_for("archive base")
    w = procs.writer(db, rate=300)
    time.sleep(4)
    w.stop()
    time.sleep(1)
    assert arch.stop() == 0
    commits = w.commits()
    assert len(commits) > 300
    lo, hi = commits[0].ack, commits[-1].ack
    rng = random.Random(7)
    for n, at in enumerate([lo + (hi - lo) * f for f in (0.2, 0.5, 0.8)] + [rng.uniform(lo, hi)]):
        info = restore_at(backup, at, tmp_path / f"r{n}.db")
        assert info["integrity"] == "ok"
        k = applied_prefix(tmp_path / f"r{n}.db", commits, metric0)
        assert info["commit_time"] <= at
        # every commit acknowledged well before `at` is in, none begun after `at` is
        assert all(c.begin <= at for c in commits[:k])
        assert all(c.ack > at - SLACK for c in commits[k:]), (k, at)
    latest = restore_at(backup, None, tmp_path / "latest.db")
    assert applied_prefix(tmp_path / "latest.db", commits, metric0) == len(commits)
    assert latest["integrity"] == "ok"


def test_disk_loss_keeps_every_commit_acknowledged_a_second_before(tmp_path, tracker, procs):
    db, metric0 = tracker
    backup = tmp_path / "backup"
    arch = procs.archiver(db, backup)
    arch.wait_for("archive base")
    w = procs.writer(db, rate=500)
    time.sleep(3)
    loss = time.time()
    w.kill()  # the disk is gone: the tracker, its files and the archiver all stop at once
    arch.kill()
    for suffix in ("", "-wal", "-shm"):
        os.unlink(f"{db}{suffix}")
    commits = w.commits()
    info = restore_at(backup, None, tmp_path / "r.db")
    assert info["integrity"] == "ok"
    k = applied_prefix(tmp_path / "r.db", commits, metric0)
    missing = [c for c in commits[k:] if c.ack <= loss - 1.0]
    assert not missing, f"{len(missing)} commits acknowledged >= 1 s before the loss are missing"


def test_sigkill_at_any_moment_then_restart_leaves_no_gap_and_no_duplicate(tmp_path, tracker, procs):
    db, metric0 = tracker
    backup = tmp_path / "backup"
    w = procs.writer(db, rate=200)
    rng = random.Random(3)
    tmp_seen = 0
    for _ in range(6):
        arch = procs.archiver(db, backup, "--publish-interval", "0.2")
        time.sleep(rng.uniform(0.8, 2.0))
        gens = SourceArchive(backup, "sqlite").generations()
        tmp_seen += sum(1 for g in gens for p in g.path.iterdir() if p.name.startswith(".tmp-"))
        arch.kill()
    arch = procs.archiver(db, backup)
    arch.wait_for("archiving sqlite")
    time.sleep(1.5)
    w.stop()
    time.sleep(1)
    assert arch.stop() == 0
    for gen in SourceArchive(backup, "sqlite").generations():
        segs, problem = gen.segments()
        assert problem is None, problem
        seqs = [e.seq for e in gen.iter_entries(0)]
        assert seqs == list(range(1, len(seqs) + 1)), f"{gen.id}: gap or duplicate"
        assert not [p for p in gen.path.iterdir() if p.name.startswith(".tmp-")]
    commits = w.commits()
    restore_at(backup, None, tmp_path / "r.db")
    assert applied_prefix(tmp_path / "r.db", commits, metric0) == len(commits)


def test_tracker_truncate_checkpoint_gets_busy_and_breaks_nothing(tmp_path, tracker, procs):
    db, metric0 = tracker
    backup = tmp_path / "backup"
    arch = procs.archiver(db, backup)
    arch.wait_for("archive base")
    w = procs.writer(db, rate=300)
    time.sleep(1)
    conn = sqlite3.connect(db, timeout=0.2, isolation_level=None)
    results = [conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone() for _ in range(3)]
    conn.close()
    time.sleep(1)
    stats = w.stop()
    time.sleep(1)
    assert arch.stop() == 0
    assert any(r[0] == 1 for r in results), f"TRUNCATE was never refused: {results}"
    assert stats["errors"] == 0, stats["last_error"]
    restore_at(backup, None, tmp_path / "r.db")
    assert applied_prefix(tmp_path / "r.db", w.commits(), metric0) == len(w.commits())


def test_tracker_restart_and_wal_resets_keep_one_generation(tmp_path, tracker, procs):
    db, metric0 = tracker
    backup = tmp_path / "backup"
    arch = procs.archiver(db, backup, "--wal-reset-pages", "300")
    arch.wait_for("archive base")
    w1 = procs.writer(db, rate=300)
    time.sleep(2)
    w1.stop()  # the tracker restarts: its connections close, a new process opens them
    w2 = procs.writer(db, rate=300)
    wal_sizes = []
    for _ in range(20):
        time.sleep(0.1)
        wal_sizes.append(os.path.getsize(f"{db}-wal"))
    w2.stop()
    time.sleep(1)
    assert arch.stop() == 0
    log = arch.log_path.read_text()
    resets = int(log.rsplit("wal resets ", 1)[1].split()[0])
    assert resets >= 1, log
    assert len(SourceArchive(backup, "sqlite").generations()) == 1
    assert max(wal_sizes) < 2500 * 4120, f"WAL not bounded: {max(wal_sizes)} bytes"
    commits = w1.commits() + w2.commits()
    restore_at(backup, None, tmp_path / "r.db")
    assert applied_prefix(tmp_path / "r.db", commits, metric0) == len(commits)


def test_replaced_database_starts_a_new_generation_with_a_base(tmp_path, tracker, procs):
    db, metric0 = tracker
    backup = tmp_path / "backup"
    arch = procs.archiver(db, backup)
    arch.wait_for("archive base")
    w = procs.writer(db, rate=200)
    time.sleep(1)
    w.stop()
    other = tmp_path / "other.db"
    shutil.copy(db, other)
    conn = sqlite3.connect(other, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("INSERT INTO keys(key, valid_until) VALUES ('replaced-marker', 1)")
    conn.close()
    os.rename(other, db)
    arch.wait_for("database replaced")
    arch.wait_for("base-000000000000.sqlite.zst published", timeout=30)
    time.sleep(1)
    assert arch.stop() == 0
    gens = SourceArchive(backup, "sqlite").generations()
    assert len(gens) == 2 and gens[1].info["reason"].startswith("database replaced")
    restore_at(backup, None, tmp_path / "r.db")
    conn = sqlite3.connect(tmp_path / "r.db")
    assert conn.execute("SELECT count(*) FROM keys WHERE key = 'replaced-marker'").fetchone()[0] == 1


def test_rollback_journal_database_is_refused_with_the_sqlite_wal_advice(tmp_path):
    from support.tracker_db import create_tracker_db

    db = create_tracker_db(tmp_path / "rb.db", rows=10, wal=False)
    with pytest.raises(UsageError, match="tracker-backup sqlite-wal"):
        SqliteArchiver(db, tmp_path / "b").open()
    assert not (tmp_path / "b").exists()
