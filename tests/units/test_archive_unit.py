"""tracker-backup-archive.service as systemd reads it (offline)."""

from __future__ import annotations

from support.unit_files import exposure, read_unit

NAME = "tracker-backup-archive.service"


def test_archive_service_exposure_is_at_most_2_0():
    score = exposure(NAME)
    print(f"systemd-analyze security --offline {NAME}: {score}")
    assert score <= 2.0


def test_archive_service_notifies_is_watched_and_restarts_on_failure_but_not_on_bad_config():
    s = read_unit(NAME)["Service"]
    assert s["Type"] == "notify" and s["NotifyAccess"] == "main"
    assert s["WatchdogSec"] and s["Restart"] == "on-failure"
    assert s["RestartPreventExitStatus"] == "2"  # exit 2 = configuration: restarting cannot help
    assert s["ExecStart"] == "/usr/bin/tracker-backup archive"
    assert "docker.service" in read_unit(NAME)["Unit"]["After"]
    assert s["ProtectSystem"] == "strict" and s["NoNewPrivileges"] == "yes"
