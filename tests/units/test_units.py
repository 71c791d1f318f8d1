"""The unit files as systemd reads them (offline: no systemd runs on the test host)."""

from __future__ import annotations

from support.unit_files import UNITS, analyze, exposure, read_unit


def test_backup_service_exposure_is_at_most_2_0():
    score = exposure("tracker-backup.service")
    print(f"systemd-analyze security --offline tracker-backup.service: {score}")
    assert score <= 2.0


def test_schedule_service_exposure_is_at_most_2_0():
    assert exposure("tracker-backup-schedule.service") <= 2.0


def test_backup_service_is_a_low_priority_oneshot_that_prunes_only_after_success():
    s = read_unit("tracker-backup.service")["Service"]
    assert s["Type"] == "oneshot" and s["NotifyAccess"] in ("main", "all")
    assert s["ExecStart"] == "/usr/bin/tracker-backup run --no-prune"
    assert s["ExecStartPost"] == "/usr/bin/tracker-backup prune"
    assert (s["Nice"], s["IOSchedulingClass"], s["IOSchedulingPriority"], s["CPUSchedulingPolicy"]) == \
        ("10", "best-effort", "7", "batch")
    assert s["ProtectSystem"] == "strict" and "ReadWritePaths" not in s  # paths come from the generator
    assert "OnFailure=" in (UNITS / "tracker-backup.service").read_text()  # the documented hook


def test_timer_is_persistent_randomized_and_not_enabled_by_install_section():
    t = read_unit("tracker-backup.timer")
    assert t["Timer"]["Persistent"] == "true" and t["Timer"]["RandomizedDelaySec"]
    assert not t.has_section("Install")  # enablement belongs to [schedule] enabled (the generator)


def test_timer_and_path_units_verify():
    proc = analyze("verify", "--man=no", "tracker-backup.timer", "tracker-backup-schedule.path")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
