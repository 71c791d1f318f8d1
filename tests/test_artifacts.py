"""artifacts.py directly: written artifacts are hashed, durable, private and read back intact."""

from __future__ import annotations

import hashlib
import os
import stat
import threading

import pytest

from tracker_backup.artifacts import (
    Artifact,
    ArtifactWriter,
    Cancelled,
    hash_file,
    iter_decompressed,
    open_decompressed,
    store_file,
)

DATA = os.urandom(300_000) + b"tracker" * 100_000  # part incompressible, part not


@pytest.mark.parametrize("compression", ["zstd", "none"])
def test_writer_records_the_stored_bytes_hash_and_reads_back_the_original(tmp_path, compression):
    with ArtifactWriter(tmp_path, "sub/blob", source="files", content="tar",
                        compression=compression) as w:
        w.write(DATA[:1000])
        w.write(DATA[1000:])
    art = w.artifact
    assert art is not None and art.raw_bytes == len(DATA)
    stored = tmp_path / art.path
    assert art.path == ("sub/blob.zst" if compression == "zstd" else "sub/blob")
    assert hash_file(stored) == (art.bytes, art.sha256)
    assert art.sha256 == hashlib.sha256(stored.read_bytes()).hexdigest()
    assert b"".join(iter_decompressed(stored, compression)) == DATA
    with open_decompressed(stored, compression) as fh:
        assert fh.read(7) == DATA[:7]
    if compression == "zstd":
        assert art.bytes < len(DATA)


def test_artifacts_are_private_files_in_private_directories(tmp_path):
    previous = os.umask(0o022)  # a permissive caller: the artifact must not inherit it
    try:
        with ArtifactWriter(tmp_path, "d/x", source="s", content="sql", compression="none") as w:
            w.write(b"x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "d/x").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o700


def test_a_failure_inside_the_writer_leaves_no_artifact_recorded(tmp_path):
    with pytest.raises(RuntimeError), ArtifactWriter(tmp_path, "x", source="s", content="sql",
                                                     compression="zstd") as w:
        w.write(b"partial")
        raise RuntimeError("source failed")
    assert w.artifact is None


def test_writer_refuses_to_overwrite_an_existing_file(tmp_path):
    (tmp_path / "x").write_bytes(b"earlier")
    with pytest.raises(FileExistsError), ArtifactWriter(tmp_path, "x", source="s",
                                                        content="sql", compression="none"):
        pass
    assert (tmp_path / "x").read_bytes() == b"earlier"


def test_store_file_compresses_a_local_file_and_cancel_stops_it(tmp_path):
    src = tmp_path / "copy.db"
    src.write_bytes(DATA)
    (tmp_path / "snap").mkdir()
    art = store_file(src, tmp_path / "snap", "sqlite/tracker.db", source="sqlite",
                     content="sqlite", compression="zstd")
    assert b"".join(iter_decompressed(tmp_path / "snap" / art.path, "zstd")) == DATA
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        store_file(src, tmp_path / "snap", "sqlite/again.db", source="sqlite",
                   content="sqlite", compression="none", cancel=cancel)


def test_artifact_json_round_trip_ignores_unknown_keys(tmp_path):
    art = Artifact(path="a", source="files", content="tar", compression="none", bytes=3,
                   sha256="0" * 64, raw_bytes=3)
    assert Artifact.from_json({**art.to_json(), "future": 1}) == art
