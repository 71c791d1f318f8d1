"""store.py directly: staging is invisible until published, the lock excludes, state is atomic."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime

import pytest

from tracker_backup.errors import LockHeld, RunFailed
from tracker_backup.store import FORMAT_VERSION, MANIFEST, Store, iso, write_json_atomic


def _manifest(staging, **extra) -> dict:
    return {"format": FORMAT_VERSION, "id": staging.id, "sequence": staging.sequence,
            "started": iso(staging.started), "sources": {}, "artifacts": [], **extra}


def _store(tmp_path) -> Store:
    store = Store(tmp_path / "backups")
    store.prepare(require_mountpoint=False)
    return store


def test_a_snapshot_is_listed_only_once_published(tmp_path):
    store = _store(tmp_path)
    staging = store.new_staging(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert staging.id == "20260102T030405Z" and store.snapshots() == []
    store.publish(staging, _manifest(staging))
    [snap] = store.snapshots()
    assert snap.id == staging.id and snap.good and snap.manifest["sequence"] == 1
    assert not staging.path.exists()


def test_same_second_ids_get_a_suffix_and_newest_sequence_comes_first(tmp_path):
    store = _store(tmp_path)
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    for _ in range(2):
        s = store.new_staging(now)
        store.publish(s, _manifest(s))
    assert [s.id for s in store.snapshots()] == ["20260102T030405Z-1", "20260102T030405Z"]
    assert store.get("latest").id == "20260102T030405Z-1"


def test_latest_skips_a_damaged_snapshot_and_unknown_ids_are_errors(tmp_path):
    store = _store(tmp_path)
    good = store.new_staging(datetime(2026, 1, 1, tzinfo=UTC))
    store.publish(good, _manifest(good))
    bad = store.new_staging(datetime(2026, 1, 2, tzinfo=UTC))
    store.publish(bad, _manifest(bad))
    (store.path / bad.id / MANIFEST).write_text("{not json")
    snaps = {s.id: s for s in store.snapshots()}
    assert snaps[bad.id].problem and not snaps[bad.id].good
    assert store.get("latest").id == good.id
    with pytest.raises(RunFailed, match="no snapshot 'nope'"):
        store.get("nope")


def test_the_lock_excludes_a_second_holder_and_names_the_first(tmp_path):
    store = _store(tmp_path)
    with store.lock("run"), pytest.raises(LockHeld, match="'run' since"), store.lock("prune"):
        pass
    with store.lock("prune"):  # released when the first holder ends
        pass


def test_debris_of_killed_runs_is_removed_and_deletion_hides_first(tmp_path):
    store = _store(tmp_path)
    left = store.new_staging(datetime(2026, 1, 1, tzinfo=UTC))
    (left.path / "half").write_bytes(b"x")
    assert store.remove_debris() == [left.path.name] and not left.path.exists()
    s = store.new_staging(datetime(2026, 1, 3, tzinfo=UTC))
    store.publish(s, _manifest(s))
    store.delete(store.get(s.id))
    assert store.snapshots() == [] and list(store.path.iterdir()) != []  # .state, .lock remain


def test_checks_and_run_records_are_written_atomically_and_privately(tmp_path):
    store = _store(tmp_path)
    s = store.new_staging(datetime(2026, 1, 1, tzinfo=UTC))
    store.publish(s, _manifest(s))
    store.record_check(s.id, {"kind": "verify", "result": "failed", "at": iso(s.started),
                              "problems": ["x"]})
    assert not store.get(s.id).good, "a failed verification marks the snapshot bad"
    path = store.path / ".state" / "state.json"
    write_json_atomic(path, {"b": 1, "a": [2]})
    assert json.loads(path.read_text()) == {"a": [2], "b": 1}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not [p for p in path.parent.iterdir() if ".tmp-" in p.name]


def test_prepare_refuses_a_missing_mountpoint(tmp_path):
    with pytest.raises(RunFailed, match="is the backup volume mounted"):
        Store(tmp_path / "absent").prepare(require_mountpoint=True)
    with pytest.raises(RunFailed, match="mount"):
        (tmp_path / "plain").mkdir()
        Store(tmp_path / "plain").prepare(require_mountpoint=True)
