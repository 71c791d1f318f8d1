"""Page snapshots (layout = pages) as bases of the continuous archive: restore --at, prune."""

from __future__ import annotations

import json
import sqlite3
import time

from engines.sqlite.pages.test_pages_cli import wait_until_archived
from faults.harness import make_host
from support.archive_kit import applied_prefix, procs_fixture  # noqa: F401 - the fixture procs
from support.tracker_db import METRIC
from tracker_backup.archive.store import SourceArchive
from tracker_backup.engines.sqlite.archive import restore as pitr
from tracker_backup.engines.sqlite.archive.steps import snapshot_bases

SLACK = 0.5  # seconds, as in test_sqlite_archiver.py


def _metric(db) -> int:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT value FROM torrent_aggregate_metrics WHERE metric_name = ?",
                            (METRIC,)).fetchone()[0]
    finally:
        conn.close()


def _check(path) -> str:
    conn = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def test_page_snapshot_replaces_the_archive_own_base_and_restore_at_starts_from_it(
        tmp_path, procs):
    host = make_host(tmp_path, rows=8000, backup="layout = pages\nverify = quick",
                     sqlite="continuous = yes", files=False,
                     retention="keep_last = 10\nkeep_days = 0")
    host.backups.mkdir(mode=0o700)
    metric0 = _metric(host.db)
    arch = procs.archiving(host.db, host.backups, "--publish-interval", "0.2")
    own = [b.path for b in SourceArchive(host.backups, "sqlite").current().bases()]
    assert own
    writer = procs.writer(host.db, rate=200, existing=8000)
    time.sleep(1.0)
    host.cli("run", check=True)  # a page snapshot under the live writer, at a WAL position
    snap = host.snapshots()[-1]
    source = json.loads((snap / "MANIFEST.json").read_text())["sources"]["sqlite"]
    assert source["layout"] == "pages" and isinstance(source.get("archive_position"), dict)
    time.sleep(1.5)
    writer.stop()
    wait_until_archived(host)
    assert arch.stop() == 0

    refs = [r for r in snapshot_bases(host.backups) if r.snapshot_id == snap.name]
    assert len(refs) == 1 and refs[0].write is not None and refs[0].seq > 0

    # Retention keeps the page snapshot as the archive's anchor (once its entry is archived:
    # the run's own prune may have come too early): the archive's own base, taken before it,
    # goes; with only full copies as bases it would stay.
    host.cli("prune", check=True)
    assert not any(p.exists() for p in own)
    assert not SourceArchive(host.backups, "sqlite").current().bases()

    # The latest point: the page snapshot reassembled, plus every archived commit after it.
    out = tmp_path / "latest.db"
    done = host.cli("restore", "--kind", "sqlite", "--at", "latest", "--to", str(out), check=True)
    assert f"page snapshot {snap.name}" in done.stdout + done.stderr
    assert _check(out) == "ok"
    commits = writer.commits()
    assert applied_prefix(out, commits, metric0) == len(commits)

    # A second between the snapshot and the end: exactly the commits acknowledged by then.
    plan = pitr.plan(host.backups, None, extra_bases=snapshot_bases(host.backups))
    assert plan.base.snapshot_id == snap.name and plan.entries > 0
    at = (refs[0].time + plan.target_time) / 2
    mid = tmp_path / "mid.db"
    plan = pitr.plan(host.backups, at, extra_bases=snapshot_bases(host.backups))
    assert plan.base.snapshot_id == snap.name
    pitr.build(plan, mid)
    assert _check(mid) == "ok"
    k = applied_prefix(mid, commits, metric0)
    # Every commit begun by then at most; every one acknowledged well before it (the
    # archiver sees a commit up to its poll interval after it returned; SLACK as there).
    assert all(c.begin <= at for c in commits[:k])
    assert all(c.ack > at - SLACK for c in commits[k:]) and 0 < k < len(commits)

    # A damaged object of the page snapshot: the restore says so and places nothing.
    name = sorted(n for n in (host.backups / "pages" / "objects").rglob("*") if n.is_file())[0]
    data = bytearray(name.read_bytes())
    data[-20] ^= 0xFF
    name.write_bytes(bytes(data))
    bad = tmp_path / "bad.db"
    failed = host.cli("restore", "--kind", "sqlite", "--at", "latest", "--to", str(bad))
    assert failed.returncode != 0 and not bad.exists()
    assert name.name in failed.stderr + failed.stdout
