"""verify.py directly: hashes first, then the engine of each recorded kind checks the content."""

from __future__ import annotations

import io
import tarfile
from datetime import UTC, datetime

from tracker_backup.artifacts import Artifact, ArtifactWriter
from tracker_backup.store import FORMAT_VERSION, Store, iso
from tracker_backup.verify import check_hashes, verify_snapshot


def _tar_bytes(n: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for i in range(n):
            info = tarfile.TarInfo(f"f{i}")
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    return buf.getvalue()


def _snapshot(tmp_path, *, members: int = 3, kind: str = "files"):
    store = Store(tmp_path / "b")
    store.prepare(require_mountpoint=False)
    staging = store.new_staging(datetime(2026, 1, 1, tzinfo=UTC))
    with ArtifactWriter(staging.path, "files.tar", source="files", content="tar",
                        compression="zstd") as w:
        w.write(_tar_bytes(3))
    manifest = {"format": FORMAT_VERSION, "id": staging.id, "sequence": staging.sequence,
                "started": iso(staging.started),
                "sources": {"files": {"kind": kind, "members": members}},
                "artifacts": [w.artifact.to_json()]}
    store.publish(staging, manifest)
    return store, store.get(staging.id), w.artifact


def test_a_good_snapshot_verifies_clean(tmp_path):
    _store, snap, _art = _snapshot(tmp_path)
    assert verify_snapshot(snap, "full") == []


def test_hash_check_names_missing_truncated_and_damaged_artifacts(tmp_path):
    _store, snap, art = _snapshot(tmp_path)
    path = snap.path / art.path
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    [problem] = check_hashes(snap.path, [art])
    assert "the file is damaged" in problem
    path.write_bytes(bytes(data[:10]))
    assert "10 bytes, the manifest says" in check_hashes(snap.path, [art])[0]
    gone = Artifact(**{**art.to_json(), "path": "gone.tar"})
    assert check_hashes(snap.path, [gone]) == ["gone.tar: missing"]


def test_content_check_goes_to_the_recorded_kinds_engine(tmp_path):
    _store, snap, _art = _snapshot(tmp_path, members=5)
    assert verify_snapshot(snap, "full") == ["files: files.tar.zst: 3 members, the manifest says 5"]


def test_an_unknown_kind_is_a_problem_not_a_crash(tmp_path):
    _store, snap, _art = _snapshot(tmp_path, kind="postgres")
    assert verify_snapshot(snap, "full") == ["source files: unknown kind 'postgres'"]
