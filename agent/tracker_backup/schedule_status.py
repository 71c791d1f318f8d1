"""Timer state and schedule health for `tracker-backup status`.

Reads the timer over D-Bus (through tracker_backup.systemd) and compares the
age of the last successful backup with the configured schedule.
"""

from __future__ import annotations

from datetime import UTC, datetime

from tracker_backup import systemd
from tracker_backup.config import Config

# Fallback intervals when systemd-analyze is not installed (systemd.time(7) shorthands).
_SHORTHANDS = {"minutely": 60, "hourly": 3600, "daily": 86400, "weekly": 7 * 86400,
               "monthly": 31 * 86400, "quarterly": 92 * 86400, "semiannually": 184 * 86400,
               "yearly": 366 * 86400, "annually": 366 * 86400}


def schedule_interval(on_calendar: str) -> float | None:
    """Seconds between two runs of an OnCalendar= expression (None if unknown)."""
    times = systemd.calendar_elapses(on_calendar, iterations=2)
    if len(times) == 2 and times[1] > times[0]:
        return times[1] - times[0]
    return _SHORTHANDS.get(on_calendar.strip().lower())


def _iso(ts: float | None) -> str | None:
    if not ts:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def timer_info(config: Config, last_success_age_sec: float | None) -> dict:
    """Timer state, next run and schedule warnings, for merging into `status` data.

    Keys: timer (e.g. "active (waiting)" or why it is unknown), next_run, last_trigger,
    schedule, schedule_enabled, schedule_interval_sec, schedule_warnings (a list the
    caller appends to its own warnings), stale (the last success is older than twice
    the schedule). next_run is None when the timer has no next elapse (inactive).
    """
    s = config.schedule
    interval = schedule_interval(s.on_calendar)
    info: dict = {
        "schedule": s.on_calendar,
        "schedule_enabled": s.enabled,
        "schedule_interval_sec": interval,
        "timer": None,
        "next_run": None,
        "last_trigger": None,
        "schedule_warnings": [],
        "stale": False,
    }
    warnings = info["schedule_warnings"]
    try:
        state = systemd.timer_state(systemd.TIMER)
    except systemd.SystemdUnavailable as exc:
        info["timer"] = f"unknown ({exc})"
    else:
        info["timer"] = f"{state['active_state']} ({state['sub_state']})"
        if state["load_state"] != "loaded":
            info["timer"] = f"{state['load_state']} ({state['active_state']})"
        info["next_run"] = _iso(state["next_elapse"])
        info["last_trigger"] = _iso(state["last_trigger"])
        if s.enabled and state["active_state"] != "active":
            warnings.append(f"[schedule] enabled = yes but {systemd.TIMER} is "
                            f"{state['active_state']}: run `tracker-backup enable`")
        if not s.enabled and state["active_state"] == "active":
            warnings.append(f"[schedule] enabled = no but {systemd.TIMER} is active: "
                            f"run `tracker-backup disable`")
    if s.enabled and interval and last_success_age_sec is not None:
        limit = 2 * interval + s.randomized_delay
        if last_success_age_sec > limit:
            info["stale"] = True
            warnings.append(
                f"last successful backup is {last_success_age_sec / 3600:.1f}h old, more than "
                f"twice the schedule ({s.on_calendar}: every {interval / 3600:.1f}h)")
    return info
