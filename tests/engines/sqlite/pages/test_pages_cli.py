"""layout = pages through the agent: run, list, verify, restore, drill, export, prune, upgrade."""

from __future__ import annotations

import json
import sqlite3
import time

import pytest

from engines.sqlite.pages.helpers import content
from faults.harness import make_host
from support.tracker_db import info_hash, invariant
from tracker_backup.engines.sqlite.pages.index import read_index_file
from tracker_backup.engines.sqlite.pages.objects import ObjectStore

PAGES = "layout = pages\nverify = full"


def manifest(snap) -> dict:
    return json.loads((snap / "MANIFEST.json").read_text())


def bump(conn, where: str) -> None:
    """completed + 1 on some torrents, the metric with them (the tracker's invariant holds)."""
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(f"UPDATE torrents SET completed = completed + 1 WHERE {where}")
    conn.execute("UPDATE torrent_aggregate_metrics SET value = value + changes()")
    conn.execute("COMMIT")


def restored_content(path) -> dict:
    conn = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return content(conn)
    finally:
        conn.close()


def test_runs_under_a_live_writer_store_only_changes_and_each_snapshot_restores_exactly(
        tmp_path, start_writer):
    host = make_host(tmp_path, rows=20000, pad=100, backup=PAGES,
                     retention="keep_last = 10\nkeep_days = 0")
    writer = start_writer(host.db, rate=300, existing=20000)
    committed = []
    for _ in range(4):
        committed.append(writer.stats().get("last_new_committed", -1))
        host.cli("run", check=True)
        time.sleep(0.3)
    writer.stop()
    snaps = host.snapshots()
    sources = [manifest(s)["sources"]["sqlite"] for s in snaps]
    assert [s["layout"] for s in sources] == ["pages"] * 4
    assert sources[0]["previous"] is None
    assert [s["previous"] for s in sources[1:]] == [s.name for s in snaps[:-1]]
    assert all(s["new_bytes"] < sources[0]["new_bytes"] / 3 for s in sources[1:])
    assert all(s["changed_pages"] < s["page_count"] / 3 for s in sources[1:])
    assert not any((s / "sqlite" / "tracker.db.zst").exists() for s in snaps)

    listing = host.cli("list", check=True).stdout
    assert "NEW" in listing.splitlines()[0] and "sqlite store" in listing.splitlines()[-1]
    rows = json.loads(host.cli("list", "--json", check=True).stdout)
    assert [r["new_bytes"] for r in rows][::-1] == [s["new_bytes"] + sum(
        a["bytes"] for a in manifest(snap)["artifacts"] if a["source"] != "sqlite")
        for s, snap in zip(sources, snaps, strict=True)]
    status = json.loads(host.cli("status", "--json", check=True).stdout)
    assert status["store_bytes"]["sqlite store"] > 0
    assert status["total_bytes"] >= status["store_bytes"]["sqlite store"]

    verify = host.cli("verify", "--all")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    for snap, source, before in zip(snaps, sources, committed, strict=True):
        out = tmp_path / f"restore-{snap.name}.db"
        host.cli("restore", snap.name, "--kind", "sqlite", "--to", str(out), check=True)
        got = restored_content(out)
        assert got["rows"] == source["row_counts"]["torrents"]
        assert got["sum"] == got["metric"]
        if before >= 0:
            conn = sqlite3.connect(f"file:{out}?mode=ro&immutable=1", uri=True)
            assert conn.execute("SELECT 1 FROM torrents WHERE info_hash = ?",
                                (info_hash(before),)).fetchone()
            conn.close()
        exported = tmp_path / f"export-{snap.name}.db"
        host.cli("export", snap.name, "--to", str(exported), check=True)
        assert exported.read_bytes() == out.read_bytes()
    drill = host.cli("drill", "--json", check=True)
    assert json.loads(drill.stdout)["result"] == "ok"


def test_prune_frees_objects_only_the_deleted_snapshots_used_and_dry_run_says_how_much(tmp_path):
    host = make_host(tmp_path, rows=3000, pad=500, backup=PAGES,
                     retention="keep_last = 5\nkeep_days = 0")
    conn = sqlite3.connect(host.db, isolation_level=None)
    for i in range(5):
        if i:
            conn.execute("UPDATE padding SET data = randomblob(500) WHERE id % 2 = ?", (i % 2,))
        host.cli("run", "--no-prune", check=True)
    conn.close()
    host.write_config(retention="keep_last = 2\nkeep_days = 0")
    store = ObjectStore(host.backups / "pages")
    before = set(store.names())
    dry = host.cli("prune", "--dry-run", check=True).stdout
    assert "would delete" in dry and "would free" in dry
    assert set(store.names()) == before and len(host.snapshots()) == 5
    would = int(dry.split("would free")[1].split("(")[1].split()[0])
    done = host.cli("prune", check=True).stdout
    freed = int(done.split("freed")[-1].split("(")[1].split()[0])
    assert freed == would > 0
    kept = host.snapshots()
    assert len(kept) == 2
    needed = set()
    for snap in kept:
        needed |= read_index_file(snap / "sqlite" / "tracker.db.pages").object_names()
    assert set(store.names()) == needed < before
    assert host.cli("verify", "--all").returncode == 0


def test_upgrade_from_full_snapshots_keeps_them_readable_and_the_first_page_snapshot_is_whole(
        tmp_path):
    host = make_host(tmp_path, rows=4000, backup="layout = full",
                     retention="keep_last = 10\nkeep_days = 0")
    host.cli("run", check=True)
    conn = sqlite3.connect(host.db, isolation_level=None)
    bump(conn, "id % 7 = 0")
    host.cli("run", check=True)
    host.write_config(backup=f"path = {host.backups}\n{PAGES}")
    host.cli("run", check=True)
    bump(conn, "id % 11 = 0")
    host.cli("run", check=True)
    conn.close()
    snaps = host.snapshots()
    layouts = [manifest(s)["sources"]["sqlite"].get("layout", "full") for s in snaps]
    assert layouts == ["full", "full", "pages", "pages"]
    first_pages = manifest(snaps[2])["sources"]["sqlite"]
    assert first_pages["previous"] is None
    assert first_pages["changed_pages"] == first_pages["page_count"]
    second = manifest(snaps[3])["sources"]["sqlite"]
    assert second["previous"] == snaps[2].name and second["changed_pages"] < second["page_count"]
    assert host.cli("verify", "--all").returncode == 0
    for snap in snaps:
        out = tmp_path / f"{snap.name}.db"
        host.cli("restore", snap.name, "--kind", "sqlite", "--to", str(out), check=True)
        got = restored_content(out)
        assert got["sum"] == got["metric"]
        assert got["rows"] == manifest(snap)["sources"]["sqlite"]["row_counts"]["torrents"]
    c = sqlite3.connect(host.db)
    assert invariant(c)[0] == restored_content(tmp_path / f"{snaps[3].name}.db")["sum"]
    c.close()


def test_bit_flip_in_a_shared_object_fails_verify_of_every_snapshot_that_uses_it(tmp_path):
    host = make_host(tmp_path, rows=4000, backup=PAGES, retention="keep_last = 10\nkeep_days = 0")
    conn = sqlite3.connect(host.db, isolation_level=None)
    for i in range(3):
        if i:
            bump(conn, f"id % 50 = {i}")
        host.cli("run", check=True)
    conn.close()
    snaps = host.snapshots()
    users = {s.name: read_index_file(s / "sqlite" / "tracker.db.pages").object_names() for s in snaps}
    shared = sorted(set.intersection(*users.values()))[0]
    path = ObjectStore(host.backups / "pages").path(shared)
    data = bytearray(path.read_bytes())
    data[-40] ^= 0x01
    path.write_bytes(bytes(data))
    proc = host.cli("verify", "--all")
    assert proc.returncode == 1
    for snap in snaps:
        assert f"{snap.name}: FAILED" in proc.stdout, proc.stdout
    assert proc.stdout.count(shared) >= len(snaps)
    out = tmp_path / "x.db"
    restore = host.cli("restore", snaps[-1].name, "--kind", "sqlite", "--to", str(out))
    assert restore.returncode == 1 and shared in restore.stderr and not out.exists()


def test_check_config_and_run_say_the_space_needed_before_starting(tmp_path):
    host = make_host(tmp_path, rows=2000, backup=PAGES)
    out = host.cli("check-config", check=True).stdout
    assert "free space: a run needs about" in out and "first page snapshot" in out
    run = host.cli("run", check=True)
    assert "free space: a run needs about" in run.stderr
    host.cli("run", check=True)
    assert "twice the largest new bytes" in host.cli("check-config", check=True).stdout


@pytest.mark.parametrize("archive_check", ["pages", "database"])
def test_with_the_archiver_running_the_next_snapshot_is_built_from_the_archive(
        tmp_path, start_writer, archive_check):
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from tracker_backup.engines.sqlite.pages.from_archive import archiver_running

    archiver_script = Path(__file__).resolve().parents[3] / "support" / "run_archiver.py"
    host = make_host(tmp_path, rows=8000, backup=PAGES, files=False,
                     sqlite=f"continuous = yes\narchive_check = {archive_check}",
                     retention="keep_last = 10\nkeep_days = 0")
    host.backups.mkdir(mode=0o700)
    archiver = subprocess.Popen([sys.executable, str(archiver_script), str(host.db),
                                 str(host.backups), "--publish-interval", "0.2"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not archiver_running(host.backups):
            assert time.monotonic() < deadline and archiver.poll() is None, archiver.stderr.read()
            time.sleep(0.05)
        writer = start_writer(host.db, rate=200, existing=8000)
        host.cli("run", check=True)  # the first page snapshot reads the database
        time.sleep(1.0)
        writer.stop()
        wait_until_archived(host)  # the archiver ships the last commits (every 0.2 s)
        host.cli("run", check=True)
        first, second = (manifest(s)["sources"]["sqlite"] for s in host.snapshots())
        assert first["method"] == "wal-snapshot"
        assert second["method"] == "archive", second
        assert second["archive_entries"] > 0 and second["changed_pages"] < second["page_count"]
        if archive_check == "pages":
            # Checked at the cost of the changes: the new objects and the page digests, no
            # PRAGMA (that is verify's and the drill's), nothing staged.
            assert second["check"]["level"] == "pages" and second["check"]["pragma"] is None
            assert 0 < second["check"]["objects_checked"] <= second["referenced_objects"]
            assert second["row_counts"] == {}
            assert "archive_check = database" not in host.cli("check-config", check=True).stdout
        else:
            assert second["check"]["pragma"] == "integrity_check"  # [backup] verify = full
            assert second["row_counts"]["torrents"] >= 8000
            assert "archive_check = database" in host.cli("check-config", check=True).stdout
        out = tmp_path / "from-archive.db"
        host.cli("restore", host.snapshots()[-1].name, "--kind", "sqlite", "--to", str(out),
                 check=True)
        live = sqlite3.connect(f"file:{host.db}?mode=ro", uri=True)
        assert restored_content(out) == content(live)  # the writer stopped: the same state
        live.close()
        assert host.cli("verify", "--all").returncode == 0
    finally:
        archiver.send_signal(signal.SIGTERM)
        archiver.communicate(timeout=30)


def wait_until_archived(host, timeout: float = 120) -> None:
    """Until the archive's last entry is the database's last commit (the writer stopped)."""
    import os

    from tracker_backup.archive.store import SourceArchive
    from tracker_backup.engines.sqlite.archive.wal import read_index_header

    deadline = time.monotonic() + timeout
    fd = os.open(f"{host.db}-shm", os.O_RDONLY)
    try:
        while True:
            hdr = read_index_header(fd)
            gen = SourceArchive(host.backups, "sqlite").current()
            segs = gen.segments()[0] if gen is not None else []
            last = segs[-1].trailer.get("last_meta") or {} if segs else {}
            if hdr is not None and segs and (hdr.mx_frame == 0 or (  # 0: reset after shipping
                    last.get("salt1"), last.get("salt2"), last.get("frame")) == (
                    hdr.salt1, hdr.salt2, hdr.mx_frame)):
                return
            if time.monotonic() > deadline:
                status = host.backups / "archive" / "sqlite" / "status.json"
                raise AssertionError(f"archive behind: {last} vs {hdr}; generation "
                                     f"{gen.id if gen else None}, {len(segs)} segments; status "
                                     f"{status.read_text() if status.exists() else 'none'}")
            time.sleep(0.1)
    finally:
        os.close(fd)
