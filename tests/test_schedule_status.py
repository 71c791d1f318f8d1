"""Schedule health for `status`: interval of the OnCalendar= expression, stale-backup warning."""

from __future__ import annotations

import pytest

from conftest import write_config
from tracker_backup import schedule_status, systemd
from tracker_backup.config import load_config


def config(tmp_path, schedule: str):
    return load_config(write_config(tmp_path / "tb.conf", f"[schedule]\n{schedule}\n[files]\nroot = /srv\n"))


@pytest.mark.parametrize("expr, seconds", [
    ("daily", 86400), ("hourly", 3600), ("weekly", 7 * 86400), ("*-*-* 00/6:00:00", 6 * 3600),
])
def test_interval_comes_from_systemd_analyze_calendar(expr, seconds):
    assert schedule_status.schedule_interval(expr) == seconds


def test_interval_falls_back_to_shorthands_without_systemd_analyze(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert systemd.calendar_elapses("daily") == []
    assert schedule_status.schedule_interval("daily") == 86400
    assert schedule_status.schedule_interval("Mon 03:00") is None


def test_warns_when_last_success_is_older_than_twice_the_schedule(tmp_path):
    cfg = config(tmp_path, "on_calendar = daily\nrandomized_delay = 10m")
    info = schedule_status.timer_info(cfg, last_success_age_sec=2 * 86400 + 601)
    assert len(info["schedule_warnings"]) == 1
    assert "more than twice the schedule (daily: every 24.0h)" in info["schedule_warnings"][0]
    fresh = schedule_status.timer_info(cfg, last_success_age_sec=2 * 86400)
    assert fresh["schedule_warnings"] == []


def test_no_stale_warning_when_the_schedule_is_disabled(tmp_path):
    cfg = config(tmp_path, "enabled = no")
    assert schedule_status.timer_info(cfg, last_success_age_sec=30 * 86400)["schedule_warnings"] == []


def test_without_systemd_timer_state_is_unknown_and_says_why(tmp_path):
    info = schedule_status.timer_info(config(tmp_path, "on_calendar = hourly"), None)
    assert info["timer"].startswith("unknown (")
    assert info["next_run"] is None
    assert info["schedule"] == "hourly" and info["schedule_interval_sec"] == 3600


def test_status_json_merges_timer_fields_and_schedule_warnings(cli):
    import json

    proc = cli("status", "--json", check=True)
    data = json.loads(proc.stdout)
    assert data["timer"].startswith("unknown (") and "schedule_interval_sec" in data
    assert "schedule_warnings" not in data
    assert data["warnings"] == ["no successful backup recorded"]
