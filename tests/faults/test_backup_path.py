"""The backup path missing, read-only, or not mounted: a clear error, nothing written anywhere else."""

from __future__ import annotations

import json

from faults.harness import (
    assert_survived,
    db_state,
    fingerprints,
    make_host,
    remount,
)


def _assert_refused(proc, *words: str) -> None:
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    for word in words:
        assert word in last, last


def test_missing_backup_path_with_require_mountpoint_creates_nothing(tmp_path):
    volume = tmp_path / "mnt/backup-volume"
    host = make_host(tmp_path, backups=volume, backup="require_mountpoint = yes")
    proc = host.cli("run")
    _assert_refused(proc, str(volume), "does not exist", "mounted")
    assert not volume.exists() and not (tmp_path / "mnt").exists()


def test_unmounted_volume_with_require_mountpoint_is_refused_and_left_empty(tmp_path, tmpfs):
    volume = tmp_path / "backup-volume"
    volume.mkdir()  # the mount point exists, the volume failed to mount
    host = make_host(tmp_path, backups=volume, backup="require_mountpoint = yes")
    proc = host.cli("run")
    _assert_refused(proc, str(volume), "not a mount point", "root filesystem")
    assert list(volume.iterdir()) == [], "the agent wrote to the root filesystem"
    for command in ("prune", "verify"):
        other = host.cli(command)
        assert other.returncode != 0 and "not a mount point" in other.stderr, other.stderr
    assert list(volume.iterdir()) == []
    tmpfs(volume)  # the operator mounts the volume: the same configuration now works
    assert host.cli("run").returncode == 0
    assert len(host.snapshots()) == 1


def test_backup_path_whose_parent_is_missing_is_refused(tmp_path):
    path = tmp_path / "no/such/dir"
    host = make_host(tmp_path, backups=path)
    proc = host.cli("run")
    _assert_refused(proc, "parent directory", str(path.parent))
    assert not (tmp_path / "no").exists()


def test_read_only_backup_path_fails_run_but_list_verify_restore_still_work(tmp_path, tmpfs):
    volume = tmpfs(tmp_path / "ro-volume")
    host = make_host(tmp_path, backups=volume)
    host.cli("run", check=True)
    before, db_before = fingerprints(host), db_state(host.db)
    remount(volume, "ro")
    proc = host.cli("run")
    _assert_refused(proc, str(volume), "not writable")
    assert fingerprints(host) == before
    listed = host.cli("list", "--json")
    assert listed.returncode == 0 and [r["id"] for r in json.loads(listed.stdout)] == list(before)
    # A read-only volume (mounted ro to restore from it) must still verify.
    verify = host.cli("verify", "--all")
    assert verify.returncode == 0, verify.stderr
    target = tmp_path / "restored.db"
    restore = host.cli("restore", "--kind", "sqlite", "--to", str(target))
    assert restore.returncode == 0, restore.stdout + restore.stderr
    assert db_state(target)["integrity"] == ["ok"]
    assert fingerprints(host) == before
    remount(volume, "rw")
    assert_survived(host, before, db_before)


def test_backup_path_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / "backups"
    path.write_text("not a directory")
    host = make_host(tmp_path, backups=path)
    proc = host.cli("run")
    _assert_refused(proc, str(path), "not a directory")
    assert path.read_text() == "not a directory"
