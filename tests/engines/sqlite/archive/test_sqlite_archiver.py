"""The SQLite archiver under a real writer: PITR exactness, disk-loss RPO, kills, checkpoints,
restarts, replacement, WAL bounded, rollback journal refused."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from support.archive_kit import (  # noqa: F401 - the fixtures tracker and procs
    applied_prefix,
    assert_latest_has_every_commit,
    procs_fixture,
    restore_at,
    tracker_fixture,
)
from tracker_backup.archive.store import SourceArchive
from tracker_backup.engines.sqlite.archive.archiver import SqliteArchiver
from tracker_backup.errors import UsageError

SLACK = 0.5  # seconds: archiver's poll + publish on this loaded 2-core machine


def restart_ship_and_check(procs, db, backup, writer) -> None:
    """Start the archiver again, let it ship the writer's last commits, stop both; then
    every generation is intact: entries 1..n with no gap or duplicate, no temp files."""
    arch = procs.archiver(db, backup)
    arch.wait_for("archiving sqlite")
    time.sleep(1.5)
    arch.stop_after(writer)
    for gen in SourceArchive(backup, "sqlite").generations():
        segs, problem = gen.segments()
        assert problem is None, problem
        seqs = [e.seq for e in gen.iter_entries(0)]
        assert seqs == list(range(1, len(seqs) + 1)), f"{gen.id}: gap or duplicate"
        assert not [p for p in gen.path.iterdir() if p.name.startswith(".tmp-")]


def test_restore_at_a_time_holds_exactly_the_commits_up_to_it(tmp_path, tracker, procs):
    db, metric0 = tracker
    backup = tmp_path / "backup"
    arch = procs.archiving(db, backup)
    w = procs.writer(db, rate=300)
    time.sleep(4)
    arch.stop_after(w)
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
    arch = procs.archiving(db, backup)
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
    k = applied_prefix(tmp_path / "r.db", commits, metric0, log_may_lag=True)
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
    restart_ship_and_check(procs, db, backup, w)
    commits = w.commits()
    assert_latest_has_every_commit(backup, tmp_path / "r.db", commits, metric0)


def test_tracker_truncate_checkpoint_gets_busy_and_breaks_nothing(tmp_path, tracker, procs):
    db, metric0 = tracker
    backup = tmp_path / "backup"
    arch = procs.archiving(db, backup)
    w = procs.writer(db, rate=300)
    time.sleep(1)
    conn = sqlite3.connect(db, timeout=0.2, isolation_level=None)
    results = [conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone() for _ in range(3)]
    conn.close()
    time.sleep(1)
    stats = arch.stop_after(w)
    assert any(r[0] == 1 for r in results), f"TRUNCATE was never refused: {results}"
    assert stats["errors"] == 0, stats["last_error"]
    assert_latest_has_every_commit(backup, tmp_path / "r.db", w.commits(), metric0)


def test_tracker_restart_and_wal_resets_keep_one_generation(tmp_path, tracker, procs):
    db, metric0 = tracker
    backup = tmp_path / "backup"
    arch = procs.archiving(db, backup, "--wal-reset-pages", "300")
    w1 = procs.writer(db, rate=300)
    time.sleep(2)
    w1.stop()  # the tracker restarts: its connections close, a new process opens them
    w2 = procs.writer(db, rate=300)
    wal_sizes = []
    for _ in range(20):
        time.sleep(0.1)
        wal_sizes.append(os.path.getsize(f"{db}-wal"))
    arch.stop_after(w2)
    log = arch.log_path.read_text()
    resets = int(log.rsplit("wal resets ", 1)[1].split(",")[0])
    assert resets >= 1, log
    assert len(SourceArchive(backup, "sqlite").generations()) == 1
    assert max(wal_sizes) < 2500 * 4120, f"WAL not bounded: {max(wal_sizes)} bytes"
    commits = w1.commits() + w2.commits()
    assert_latest_has_every_commit(backup, tmp_path / "r.db", commits, metric0)


def test_replaced_database_starts_a_new_generation_with_a_base(tmp_path, tracker, procs):
    db, metric0 = tracker
    backup = tmp_path / "backup"
    arch = procs.archiving(db, backup)
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


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_full_backup_path_stalls_loudly_then_resumes_without_gap(tmp_path, tracker, procs):
    db, metric0 = tracker
    backup = tmp_path / "backup"
    backup.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m,mode=0700", "tmpfs", str(backup)],
                   check=True)
    try:
        arch = procs.archiving(db, backup)
        w = procs.writer(db, rate=300)
        time.sleep(1)
        filler = backup / "filler"
        with open(filler, "wb") as fh:
            with contextlib.suppress(OSError):
                while True:
                    fh.write(b"\0" * (1 << 20))
                    fh.flush()
        arch.wait_for("archive STALLED", timeout=20)
        time.sleep(2)
        filler.unlink()
        arch.wait_for("archiving resumed", timeout=40)
        time.sleep(1)
        stats = arch.stop_after(w)
        assert stats["errors"] == 0
        gen = SourceArchive(backup, "sqlite").current()
        assert gen.segments()[1] is None
        assert not [p for p in gen.path.iterdir() if p.name.startswith(".tmp-")]
        seqs = [e.seq for e in gen.iter_entries(0)]
        assert seqs == list(range(1, len(seqs) + 1))
        assert_latest_has_every_commit(backup, tmp_path / "r.db", w.commits(), metric0)
        # Entries shipped after the stall kept the time they were seen at, not the resume time:
        # entry i is the writer's commit i (the only writer, started after the base).
        commits = w.commits()
        late = [e.time - c.ack for e, c in zip(gen.iter_entries(0), commits, strict=True)]
        early = [c.begin - e.time for e, c in zip(gen.iter_entries(0), commits, strict=True)]
        assert max(late) < 1.0, f"an entry was stamped {max(late):.2f} s after its commit"
        assert max(early) <= 0.0, "an entry was stamped before its transaction began"
    finally:
        arch.kill()
        subprocess.run(["umount", "-l", str(backup)], check=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another uid")
def test_writer_as_uid_1000_keeps_its_files_owner(tmp_path, procs):
    import tempfile

    from support.tracker_db import create_tracker_db

    world = Path(tempfile.mkdtemp(prefix="tb-archive-", dir="/var/tmp"))
    world.chmod(0o1777)
    request_cleanup = world
    dbdir = world / "owned"
    dbdir.mkdir()
    db = create_tracker_db(dbdir / "tracker.db", rows=2000)
    for p in dbdir.iterdir():
        if p != db:
            p.unlink()
    os.chown(dbdir, 1000, 1000)
    os.chown(db, 1000, 1000)
    db.chmod(0o640)
    backup = tmp_path / "backup"
    arch = procs.archiving(db, backup)  # as root, first to open: SQLite creates -wal/-shm
    for suffix in ("-wal", "-shm"):
        st = os.stat(f"{db}{suffix}")
        assert (st.st_uid, st.st_gid) == (1000, 1000), f"{suffix} owned by {st.st_uid}"
    try:
        w = procs.writer(db, rate=200, existing=2000, user="1000", workdir=world)
        time.sleep(1.5)
        stats = arch.stop_after(w, settle=0.7)
        assert stats["errors"] == 0, stats["last_error"]
        for p in dbdir.iterdir():
            assert p.stat().st_uid == 1000, f"{p.name} owned by {p.stat().st_uid}"
    finally:
        shutil.rmtree(request_cleanup, ignore_errors=True)


def test_a_transaction_larger_than_the_buffer_is_streamed_and_restored(tmp_path, tracker, procs):
    db, _ = tracker
    backup = tmp_path / "backup"
    arch = procs.archiving(db, backup)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("CREATE TABLE big (id INTEGER PRIMARY KEY, data BLOB)")
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO big(data) VALUES (?)", ((os.urandom(3000),) for _ in range(8000)))
    conn.execute("COMMIT")  # ~24 MB of pages in one commit: more than the 16 MB buffer
    want = conn.execute("SELECT count(*), sum(length(data)), max(id) FROM big").fetchone()
    conn.close()
    time.sleep(1.5)
    assert arch.stop() == 0
    restore_at(backup, None, tmp_path / "r.db")
    got = sqlite3.connect(tmp_path / "r.db").execute(
        "SELECT count(*), sum(length(data)), max(id) FROM big").fetchone()
    assert got == want


def test_a_database_that_shrinks_and_grows_again_restores_at_every_step(tmp_path, tracker, procs):
    db, _ = tracker
    backup = tmp_path / "backup"
    arch = procs.archiving(db, backup)
    conn = sqlite3.connect(db, isolation_level=None)
    states = []

    def mark():
        time.sleep(0.3)
        states.append((time.time(), conn.execute("PRAGMA page_count").fetchone()[0],
                       conn.execute("SELECT count(*) FROM keys").fetchone()[0]))
        time.sleep(0.3)

    conn.execute("CREATE TABLE big (id INTEGER PRIMARY KEY, data BLOB)")
    conn.executemany("INSERT INTO big(data) VALUES (?)", ((os.urandom(2000),) for _ in range(2000)))
    mark()
    conn.execute("DROP TABLE big")
    conn.execute("VACUUM")  # in WAL mode: every page rewritten, the database truncated
    mark()
    conn.execute("INSERT INTO keys(key, valid_until) VALUES ('after-vacuum', 1)")
    mark()
    conn.close()
    time.sleep(1)
    assert arch.stop() == 0
    assert states[1][1] < states[0][1] / 2, states
    for n, (at, pages, keys) in enumerate(states):
        restore_at(backup, at, tmp_path / f"s{n}.db")
        r = sqlite3.connect(tmp_path / f"s{n}.db")
        assert (r.execute("PRAGMA page_count").fetchone()[0],
                r.execute("SELECT count(*) FROM keys").fetchone()[0]) == (pages, keys)
        assert os.path.getsize(tmp_path / f"s{n}.db") == pages * 4096
        assert r.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is in scripts/test-packages.txt")
@pytest.mark.parametrize("syscalls", ["fsync", "rename,renameat,renameat2"],
                         ids=["before-the-fsync", "before-the-rename"])
def test_sigkill_exactly_mid_publish_then_restart_leaves_no_gap_and_no_duplicate(
        tmp_path, tracker, procs, syscalls):
    db, metric0 = tracker
    backup = tmp_path / "backup"
    arch = procs.archiving(db, backup)
    w = procs.writer(db, rate=200)
    time.sleep(0.5)
    # The kernel kills the archiver as it enters the 4th such syscall from now: a segment
    # written but not yet fsynced, or fsynced but not yet renamed to its name.
    trap = subprocess.Popen(["strace", "-f", "-qq", "-o", "/dev/null", "-p", str(arch.proc.pid),
                             "-e", f"trace={syscalls}",
                             "-e", f"inject={syscalls}:signal=SIGKILL:when=4"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        arch.proc.wait(timeout=60)
    finally:
        trap.terminate()
        trap.wait(timeout=30)
    assert arch.proc.returncode == -9
    arch.fh.close()
    restart_ship_and_check(procs, db, backup, w)
    assert_latest_has_every_commit(backup, tmp_path / "r.db", w.commits(), metric0)
