"""The archive store: generations, shipping, chain checks across segments, debris, compaction."""

from __future__ import annotations

import pytest

from tracker_backup.archive.segment import SegmentError
from tracker_backup.archive.store import Shipper, SourceArchive, maintenance_lock, merge_segments
from tracker_backup.errors import LockHeld, RunFailed


def _gen(tmp_path):
    arch = SourceArchive(tmp_path, "sqlite")
    return arch, arch.new_generation(engine="sqlite", reason="first start",
                                     identity={"ino": 1}, origin="/x.db")


def _ship(gen, segments: int, per: int, t0: float = 1000.0, dt: float = 0.01):
    sh = Shipper(gen)
    t = t0
    for _ in range(segments):
        for _ in range(per):
            sh.append(t, {"k": 1}, b"p" * 100)
            t += dt
        sh.publish()
    return sh


def test_generation_is_published_with_its_description(tmp_path):
    arch, gen = _gen(tmp_path)
    assert arch.generations()[0].id == gen.id
    assert gen.info["reason"] == "first start" and gen.info["identity"] == {"ino": 1}
    assert oct(gen.path.stat().st_mode & 0o777) == "0o700"


def test_shipper_resumes_after_the_last_published_entry(tmp_path):
    _, gen = _gen(tmp_path)
    _ship(gen, 3, 10)
    sh = Shipper(gen)
    assert sh.last_seq == 30 and sh.last_published_meta == {"k": 1}
    sh.append(2000.0, {"k": 2}, b"z")
    sh.publish()
    assert [e.seq for e in gen.iter_entries(0)] == list(range(1, 32))


def test_rewind_forgets_unpublished_entries(tmp_path):
    _, gen = _gen(tmp_path)
    sh = _ship(gen, 1, 5)
    sh.append(1.0, {}, b"lost")
    sh.rewind()
    sh.append(2.0, {}, b"kept")
    sh.publish()
    assert [e.data for e in gen.iter_entries(5)] == [b"kept"]


def test_missing_segment_is_a_gap_never_skipped(tmp_path):
    _, gen = _gen(tmp_path)
    _ship(gen, 3, 10)
    gen.segment_files()[1].unlink()
    segs, problem = gen.segments()
    assert [s.last_seq for s in segs] == [10] and "11..20 are missing" in problem
    assert [e.seq for e in gen.iter_entries(0, 10)] == list(range(1, 11))
    with pytest.raises(SegmentError, match="missing"):
        list(gen.iter_entries(0, 25))
    with pytest.raises(RunFailed):
        Shipper(gen)


def test_segment_from_another_chain_is_refused(tmp_path):
    _, gen = _gen(tmp_path)
    (tmp_path / "o").mkdir()
    _, other = _gen(tmp_path / "o")
    _ship(gen, 1, 10)
    _ship(other, 2, 10)
    src = other.segment_files()[1]
    (gen.path / src.name).write_bytes(src.read_bytes())
    _, problem = gen.segments()
    assert problem and "generation" in problem


def test_interrupted_compaction_leaves_a_readable_archive_and_debris_is_removed(tmp_path):
    _, gen = _gen(tmp_path)
    _ship(gen, 4, 10)
    segs, _ = gen.segments()
    merged = merge_segments(gen, segs[:3], level=1)
    # Put back one merged input, as if the deletion after the publish had been cut short.
    assert merged.first_seq == 1 and merged.last_seq == 30
    sh = Shipper(gen)
    assert sh.last_seq == 40
    assert [e.seq for e in gen.iter_entries(0)] == list(range(1, 41))
    (gen.path / ".tmp-000000000041-1.seg").write_bytes(b"half")
    assert ".tmp-000000000041-1.seg" in gen.remove_debris()


def test_compaction_merges_old_level0_segments_into_minute_segments(tmp_path):
    _, gen = _gen(tmp_path)
    sh = _ship(gen, 300, 5, t0=0.0, dt=0.1)  # 150 s of 0.5 s segments
    before = len(gen.segment_files())
    while sh.compact(now=10_000.0):
        pass
    after = gen.segments()[0]
    # Two complete minutes became two level-1 segments; the last, still open minute waits.
    assert [s.trailer["level"] for s in after[:2]] == [1, 1]
    assert after[0].last_time - after[0].first_time <= 60 and len(after) <= 2 + before // 5 + 1
    assert [e.seq for e in gen.iter_entries(0)] == list(range(1, 1501))



def test_compaction_skips_its_turn_while_a_prune_holds_the_maintenance_lock(tmp_path):
    # A prune (another process) writes the PRUNED marker and deletes segments; a merge begun
    # before the marker and published after it would start before the marker's entry, and
    # no reader would accept the list. So compaction never runs while a prune holds the lock.
    _, gen = _gen(tmp_path)
    sh = _ship(gen, 300, 5, t0=0.0, dt=0.1)
    before = sorted(p.name for p in gen.segment_files())
    with maintenance_lock(gen.path.parent, 0) as got:
        assert got
        assert sh.compact(now=10_000.0) == 0
        assert sorted(p.name for p in gen.segment_files()) == before
    assert sh.compact(now=10_000.0) >= 2  # its next turn, once the prune is done

def test_one_archiver_per_source(tmp_path):
    arch = SourceArchive(tmp_path, "sqlite")
    with arch.lock(), pytest.raises(LockHeld, match="another archiver"), \
            SourceArchive(tmp_path, "sqlite").lock():
        pass


def test_base_is_published_with_its_description(tmp_path):
    _, gen = _gen(tmp_path)
    src = tmp_path / "copy.db"
    src.write_bytes(b"SQLite format 3\x00" + b"\0" * 4000)
    base = gen.publish_base(src, kind="sqlite", seq=0, time=5.0, position={"frame": 0})
    assert base.path.name == "base-000000000000.sqlite.zst"
    assert gen.bases()[0].info["raw_bytes"] == 4016
    assert not [p for p in gen.path.iterdir() if p.name.startswith(".")]


def test_reading_survives_a_compaction_that_replaces_the_segments_under_it(tmp_path):
    _, gen = _gen(tmp_path)
    _ship(gen, 6, 10)
    segs, _ = gen.segments()
    it = gen.iter_entries(0)
    got = [next(it).seq for _ in range(15)]  # inside the second segment
    merge_segments(gen, segs[2:6], level=1)  # the third..sixth are replaced by one file
    got += [e.seq for e in it]
    assert got == list(range(1, 61))


def test_a_damaged_entry_before_the_target_fails_the_read_even_if_the_target_is_mid_segment(tmp_path):
    _, gen = _gen(tmp_path)
    _ship(gen, 1, 50)
    seg = gen.segment_files()[0]
    data = bytearray(seg.read_bytes())
    data[len(data) // 2] ^= 0x10
    seg.write_bytes(bytes(data))
    with pytest.raises(SegmentError):
        list(gen.iter_entries(0, 5))
