"""Segment files: round trip, durability of the name, and every kind of damage detected."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tracker_backup.archive.segment import (
    SegmentError,
    SegmentWriter,
    chain_start,
    iter_entries,
    read_trailer,
    verify_segment,
)


def _write(directory: Path, first: int = 1, n: int = 50, chain: bytes | None = None):
    w = SegmentWriter(directory, source="sqlite", engine="sqlite", generation="G",
                      first_seq=first, chain_before=chain or chain_start("G"))
    for i in range(n):
        w.append(1000.0 + i, {"pages": [i]}, bytes([i % 256]) * 4096)
    return w, w.publish()


def test_round_trip_keeps_every_entry_in_order(tmp_path):
    _, info = _write(tmp_path)
    assert info.path.name == "000000000001-000000000050.seg"
    entries = list(iter_entries(info.path))
    assert [e.seq for e in entries] == list(range(1, 51))
    assert entries[7].meta["pages"] == [7] and entries[7].data == bytes([7]) * 4096
    assert entries[7].time == 1007.0
    assert oct(info.path.stat().st_mode & 0o777) == "0o600"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_zstd_reads_the_entry_stream_and_skips_the_trailer(tmp_path):
    _, info = _write(tmp_path, n=3)
    assert subprocess.run(["zstd", "-t", "-q", str(info.path)]).returncode == 0
    out = subprocess.run(["zstd", "-d", "-c", "-q", str(info.path)], capture_output=True).stdout
    assert out.count(b'"pages"') == 3 and len(out) > 3 * 4096


def test_hot_page_versions_compress_well(tmp_path):
    w = SegmentWriter(tmp_path, source="s", engine="sqlite", generation="G", first_seq=1,
                      chain_before=chain_start("G"))
    page = bytearray(os.urandom(4096))
    for i in range(500):
        page[100:104] = i.to_bytes(4, "big")
        w.append(float(i), {"pages": [2]}, bytes(page))
    info = w.publish()
    assert info.bytes < 500 * 4096 / 20


def test_nothing_is_published_when_the_writer_fails(tmp_path):
    w = SegmentWriter(tmp_path, source="s", engine="sqlite", generation="G", first_seq=1,
                      chain_before=chain_start("G"))
    w.append(1.0, {}, b"x" * 10)
    w.discard()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("where", ["payload", "trailer", "truncated"])
def test_damage_is_detected(tmp_path, where):
    _, info = _write(tmp_path)
    data = bytearray(info.path.read_bytes())
    if where == "payload":
        data[len(data) // 3] ^= 0x40
    elif where == "trailer":
        data[-20] ^= 0x01
    else:
        data = data[: len(data) // 2]
    info.path.write_bytes(bytes(data))
    with pytest.raises(SegmentError):
        verify_segment(info.path)


def test_altered_entries_break_the_chain_even_with_a_recomputed_payload_hash(tmp_path):
    (tmp_path / "a").mkdir()
    _, good = _write(tmp_path / "a")
    # Same entries except one, written as a separate valid segment with the original trailer chain.
    (tmp_path / "b").mkdir()
    w = SegmentWriter(tmp_path / "b", source="sqlite", engine="sqlite", generation="G",
                      first_seq=1, chain_before=chain_start("G"))
    for i in range(50):
        w.append(1000.0 + i, {"pages": [i]}, bytes([(i + (i == 9)) % 256]) * 4096)
    forged = w.publish()
    assert read_trailer(forged.path)[0]["chain_after"] != good.trailer["chain_after"]
