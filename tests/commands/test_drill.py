"""`tracker-backup drill`: restore into scratch, check, record the RTO for `list` and `status`."""

from __future__ import annotations

import json
import time

from support.restore_kit import forge_artifact, latest_snapshot, make_tar, member
from support.unit_files import analyze, exposure, read_unit
from tracker_backup.errors import EXIT_LOCKED, EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE
from tracker_backup.store import Store


def test_drill_restores_every_kind_checks_it_and_records_the_rto(cli, tmp_path, storage,
                                                                start_writer):
    writer = start_writer(storage / "tracker/lib/database/tracker.db", rate=200)
    snap_id = cli("run", check=True).stdout.strip()
    proc = cli("drill", "--json", check=True)
    writer.stop()
    result = json.loads(proc.stdout)
    manifest = json.loads((tmp_path / "backups" / snap_id / "MANIFEST.json").read_text())
    assert result["id"] == snap_id and result["result"] == "ok" and result["problems"] == []
    assert result["kinds"] == ["files", "sqlite"]
    assert result["rto_sec"] > 0
    assert result["details"]["sqlite"]["row_counts"] == manifest["sources"]["sqlite"]["row_counts"]
    assert result["details"]["files"]["members"] == manifest["sources"]["files"]["members"]
    assert f"restore drill of snapshot {snap_id} ok" in proc.stderr
    assert not [p for p in (tmp_path / "backups").iterdir() if p.name.startswith(".staging")]

    rows = json.loads(cli("list", "--json", check=True).stdout)
    assert rows[0]["last_restore_drill"]["result"] == "ok"
    assert rows[0]["last_restore_drill"]["rto_sec"] == result["rto_sec"]
    assert "; drill ok " in cli("list", check=True).stdout
    status = json.loads(cli("status", "--json", check=True).stdout)
    assert status["last_proven_restorable"]["snapshot"] == snap_id
    assert "last drill:   ok at " in cli("status", check=True).stdout


def test_drill_of_a_damaged_snapshot_fails_and_marks_it_failed(cli, tmp_path):
    older = cli("run", check=True).stdout.strip()
    newer = cli("run", check=True).stdout.strip()
    art = tmp_path / "backups" / newer / "sqlite" / "tracker.db.zst"
    data = bytearray(art.read_bytes())
    data[100] ^= 0x01
    art.write_bytes(bytes(data))
    proc = cli("drill", newer)
    assert proc.returncode == EXIT_RUN_FAILED
    assert f"{newer}: drill FAILED" in proc.stdout and "sha256" in proc.stdout
    rows = {r["id"]: r for r in json.loads(cli("list", "--json", check=True).stdout)}
    assert rows[newer]["last_restore_drill"]["result"] == "failed"
    assert rows[newer]["good"] is False
    # `latest` now means the older, proven snapshot.
    assert cli("drill", check=True).stdout.startswith(f"{older}: drill OK")


def test_drill_fails_on_an_archive_that_would_escape_its_scratch_directory(cli, tmp_path):
    cli("run", check=True)
    snap = latest_snapshot(tmp_path / "backups")
    forge_artifact(snap, "files.tar.zst", make_tar([member("../../escape")]), members=1)
    proc = cli("drill")
    assert proc.returncode == EXIT_RUN_FAILED and "contains '..'" in proc.stdout
    assert not (tmp_path / "escape").exists() and not (tmp_path / "backups/escape").exists()


def test_drill_with_no_snapshots_is_an_error_not_a_success(cli, tmp_path):
    (tmp_path / "backups").mkdir()
    proc = cli("drill")
    assert proc.returncode == EXIT_RUN_FAILED and "no good snapshot" in proc.stderr
    assert cli("drill", "latest").returncode != EXIT_OK


def test_drill_waits_for_a_running_backup_with_wait_and_exits_3_without(cli, tmp_path):
    cli("run", check=True)
    store = Store(tmp_path / "backups")
    with store.lock("a backup run"):
        assert cli("drill").returncode == EXIT_LOCKED
        child = cli.popen("drill", "--wait", "60s")
        time.sleep(1.0)
        assert child.poll() is None, "the drill must wait while the lock is held"
    out, err = child.communicate(timeout=60)
    assert child.returncode == EXIT_OK, err
    assert "drill OK" in out and "waiting" in err
    assert cli("drill", "--wait", "soon").returncode == EXIT_USAGE


# -- the drill's units (read offline: no systemd runs on the test host) -------


def test_drill_service_is_a_hardened_low_priority_oneshot_that_waits_for_the_lock():
    s = read_unit("tracker-backup-drill.service")["Service"]
    assert s["Type"] == "oneshot"
    assert s["ExecStart"].split()[:3] == ["/usr/bin/tracker-backup", "drill", "--wait"]
    assert s["Nice"] == "10" and s["IOSchedulingClass"] == "best-effort"
    assert s["ProtectSystem"] == "strict" and "ReadWritePaths" not in s  # from the generator
    assert exposure("tracker-backup-drill.service") <= 2.0


def test_drill_timer_is_weekly_by_default_and_enabled_only_by_the_generator():
    t = read_unit("tracker-backup-drill.timer")
    assert t["Timer"]["OnCalendar"] == "weekly" and t["Timer"]["Persistent"] == "true"
    assert not t.has_section("Install")
    proc = analyze("verify", "--man=no", "tracker-backup-drill.timer")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
