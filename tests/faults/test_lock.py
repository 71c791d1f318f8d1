"""Two runs at once, and the lock left by a killed run."""

from __future__ import annotations

from faults.harness import (
    assert_survived,
    db_state,
    fingerprints,
    kill,
    make_host,
    start_slow_second_run,
    wait_for,
)


def test_second_run_prune_and_verify_while_a_run_is_active_exit_3_and_touch_nothing(tmp_path):
    host, before, db_before, first = start_slow_second_run(tmp_path)
    staging = wait_for(host.staging, what="the first run's staging directory", proc=first)
    for command in ("run", "prune", "verify"):
        other = host.cli(command)
        assert other.returncode == 3, (command, other.returncode, other.stderr)
        assert f"pid {first.pid}" in other.stderr, other.stderr  # names the holder
        assert "Traceback" not in other.stderr
        assert staging.is_dir(), f"`{command}` removed the active run's staging directory"
    assert fingerprints(host) == before
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert (host.backups / out.strip() / "MANIFEST.json").is_file()
    host.write_config(backup=f"path = {host.backups}")
    assert_survived(host, before, db_before)


def test_lock_of_a_killed_run_is_not_stale_and_its_debris_is_removed(tmp_path):
    host, before, db_before, first = start_slow_second_run(tmp_path)
    wait_for(host.staging, what="the first run's staging directory", proc=first)
    code, _out, _err = kill(first)
    assert code == -9
    # The lock file still names the dead run; only the kernel's flock counts, and it is gone.
    assert f"pid {first.pid}" in (host.backups / ".lock").read_text()
    assert host.debris()
    host.write_config(backup=f"path = {host.backups}")
    proc = host.cli("run")
    assert proc.returncode == 0, proc.stderr
    assert "left by an interrupted run" in proc.stderr
    assert host.debris() == []
    assert_survived(host, before, db_before)


def test_deleting_lock_file_during_a_run_cannot_publish_an_incomplete_snapshot(tmp_path):
    host = make_host(tmp_path, rows=3000, pad=4000, big_file=3_000_000)
    host.cli("run", check=True)
    before, db_before = fingerprints(host), db_state(host.db)
    host.write_config(backup=f"path = {host.backups}\nrate_limit = 4")
    first = host.start()
    wait_for(lambda: host.staging() and (host.staging() / "sqlite").is_dir(),
             what="the first run's SQLite copy", proc=first)
    (host.backups / ".lock").unlink()  # an operator "cleaning up a stale lock"
    host.write_config(backup=f"path = {host.backups}")
    second = host.cli("run", "--no-prune")  # takes a fresh lock, removes the first's staging
    assert second.returncode == 0, second.stderr
    _out, err = first.communicate(timeout=120)
    assert first.returncode == 1, err  # its staging vanished: it fails, it does not publish
    assert "Traceback" not in err
    assert len({p.name for p in host.snapshots()} - set(before)) == 1
    assert_survived(host, before, db_before)
