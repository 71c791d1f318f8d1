"""Archive retention: only what no kept base needs is deleted."""

from __future__ import annotations

import threading

from tracker_backup.archive import retention
from tracker_backup.archive.retention import apply_prune, plan_prune, prune_for
from tracker_backup.archive.store import Shipper, SourceArchive, maintenance_lock


def _gen_with(tmp_path, arch, n_segments=4, per=10, t0=1000.0, base_seqs=(0,)):
    gen = arch.new_generation(engine="sqlite", reason="test", identity={}, origin="x")
    src = tmp_path / "b.db"
    src.write_bytes(b"x" * 100)
    sh = Shipper(gen)
    t = t0
    for seq in base_seqs:
        gen.publish_base(src, kind="sqlite", seq=seq, time=t0 + seq, position={})
    for _ in range(n_segments):
        for _ in range(per):
            sh.append(t, {}, b"d")
            t += 1
        sh.publish()
    return gen


def test_segments_before_the_oldest_kept_snapshot_base_go_and_the_rest_stays(tmp_path):
    arch = SourceArchive(tmp_path, "sqlite")
    gen = _gen_with(tmp_path, arch)
    plan = plan_prune(arch, {gen.id: [25, 35]}, oldest_kept_snapshot=1025, keep_days=7, now=2000)
    kinds = sorted((d.kind, d.path.name) for d in plan)
    assert kinds == [("base", "base-000000000000.sqlite.zst"),
                     ("segment", "000000000001-000000000010.seg"),
                     ("segment", "000000000011-000000000020.seg")]
    apply_prune(plan)
    segs, problem = gen.segments()
    assert problem is None and segs[0].first_seq == 21  # starts after entry 20, on purpose
    assert [e.seq for e in gen.iter_entries(20)] == list(range(21, 41))
    assert Shipper(gen).last_seq == 40
    assert sorted(p.name for p in gen.path.iterdir() if p.suffix == ".seg") == [
        "000000000021-000000000030.seg", "000000000031-000000000040.seg"]


def test_without_kept_snapshots_the_newest_own_base_is_the_anchor(tmp_path):
    arch = SourceArchive(tmp_path, "sqlite")
    gen = _gen_with(tmp_path, arch, base_seqs=(0, 20))
    plan = plan_prune(arch, {}, oldest_kept_snapshot=None, keep_days=7, now=2000)
    assert {d.path.name for d in plan} == {"base-000000000000.sqlite.zst",
                                          "000000000001-000000000010.seg",
                                          "000000000011-000000000020.seg"}
    assert gen.id  # the generation itself stays


def test_older_generation_goes_only_when_no_kept_snapshot_needs_it(tmp_path):
    arch = SourceArchive(tmp_path, "sqlite")
    old = _gen_with(tmp_path, arch, t0=1000)
    import time
    time.sleep(1.1)  # generation ids are per second
    new = _gen_with(tmp_path, arch, t0=5000)
    assert [d.kind for d in plan_prune(arch, {old.id: [10]}, 1010, 7, 6000)
            if d.path == old.path] == []
    plan = plan_prune(arch, {}, oldest_kept_snapshot=4000, keep_days=7, now=6000)
    assert [d.path for d in plan if d.kind == "generation"] == [old.path]
    apply_prune(plan)
    assert [g.id for g in arch.generations()] == [new.id]


def test_a_prune_waits_for_a_compaction_in_progress_then_prunes(tmp_path):
    arch = SourceArchive(tmp_path, "sqlite")
    gen = _gen_with(tmp_path, arch)
    held, release = threading.Event(), threading.Event()

    def compaction():  # the archiver's turn, as another open of the lock file
        with maintenance_lock(arch.path, 0) as got:
            assert got
            held.set()
            release.wait(5)

    t = threading.Thread(target=compaction)
    t.start()
    held.wait(5)
    threading.Timer(0.3, release.set).start()
    lines = prune_for(arch, {gen.id: [25]}, [], keep_days=7, dry_run=False)
    t.join()
    assert [ln for ln in lines if "segment" in ln] and all(ln.startswith("deleted") for ln in lines)
    assert gen.segments() == (gen.segments()[0], None) and gen.segments()[0][0].first_seq == 21


def test_a_prune_that_cannot_get_its_turn_deletes_nothing_and_says_so(tmp_path, monkeypatch):
    arch = SourceArchive(tmp_path, "sqlite")
    gen = _gen_with(tmp_path, arch)
    before = sorted(p.name for p in gen.path.iterdir())
    monkeypatch.setattr(retention, "PRUNE_WAIT", 0.2)
    with maintenance_lock(arch.path, 0):
        lines = prune_for(arch, {gen.id: [25]}, [], keep_days=7, dry_run=False)
    assert len(lines) == 1 and "not pruned this time" in lines[0] and "nothing deleted" in lines[0]
    assert sorted(p.name for p in gen.path.iterdir()) == before


def test_a_prune_whose_anchor_is_past_every_published_segment_keeps_the_newest_one(tmp_path):
    # A run's page snapshot pins the WAL at entry 45; the archiver (lagging under load) has
    # published up to 40. Deleting all four segments left no PRUNED marker: the archiver's
    # next segment (41..) then did not follow entry 1's chain and the generation was unreadable.
    arch = SourceArchive(tmp_path, "sqlite")
    gen = _gen_with(tmp_path, arch)
    apply_prune(plan_prune(arch, {gen.id: [45]}, oldest_kept_snapshot=1045, keep_days=7, now=2000))
    segs, problem = gen.segments()
    assert problem is None and [(s.first_seq, s.last_seq) for s in segs] == [(31, 40)]
    sh = Shipper(gen)
    assert sh.last_seq == 40
    for i in range(10):
        sh.append(2000.0 + i, {}, b"d")
    sh.publish()
    segs, problem = gen.segments()
    assert problem is None and [(s.first_seq, s.last_seq) for s in segs] == [(31, 40), (41, 50)]
    assert [e.seq for e in gen.iter_entries(44)] == list(range(45, 51))
