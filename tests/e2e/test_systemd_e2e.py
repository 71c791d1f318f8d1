"""End to end under a real, booted systemd: the .deb installed by apt in a Debian 12 container.

One container (systemd-nspawn, --volatile=overlay over the cached tree) serves the
whole module; the tests run in file order and each leaves the config valid.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from e2e.guest import DB, STATS, journal_entries, journal_text, show, start_tracker
from support.polling import wait_for
from tracker_backup.systemd import MESSAGE_IDS

pytestmark = pytest.mark.e2e

CONF = "/etc/tracker-backup/tracker-backup.conf"
SERVICE = "tracker-backup.service"


def config_text(*, enabled: str = "yes", on_calendar: str = "*-*-* 03:00:00",
                rate_limit: str = "0", extra: str = "") -> str:
    return f"""; e2e test configuration (comments must survive enable/disable)
[backup]
path = /srv/backups/tracker   ; created by the service
rate_limit = {rate_limit}

[schedule]
enabled = {enabled}   ; the switch
on_calendar = {on_calendar}
randomized_delay = 0

[sqlite]
database = {DB}

[files]
root = /opt/torrust/storage
include = tracker/etc/**
{extra}"""


def snapshots(box) -> list[dict]:
    return json.loads(box.run(["tracker-backup", "list", "--json"]).stdout)


@pytest.fixture(scope="module")
def tracker(container):
    """Tracker storage owned by a non-root uid, with a writer running as that uid."""
    box = container
    box.sh("mkdir -p /opt/torrust/storage/tracker/etc /opt/torrust/storage/tracker/log; "
           "echo '[core]' > /opt/torrust/storage/tracker/etc/tracker.toml")
    start_tracker(box, rows=60000)
    box.write(CONF, config_text(rate_limit="1"))
    box.run(["systemctl", "daemon-reload"])
    return box


def test_package_installs_with_debian_dependencies_and_enables_the_timer(container):
    box = container
    status = box.run(["dpkg-query", "-W", "-f", "${Status} ${Version}",
                      "tracker-backup", "python3-pystemd", "python3-zstandard"]).stdout
    assert status.count("install ok installed") == 3, status
    assert "/etc/tracker-backup/tracker-backup.conf" in box.run(
        ["dpkg-query", "-W", "-f", "${Conffiles}", "tracker-backup"]).stdout
    # The packaged config (deployer layout) says enabled: the timer is active after install.
    assert box.run(["systemctl", "is-active", "tracker-backup.timer"], check=False).stdout.strip() == "active"
    assert "tracker-backup.timer" in box.run(["systemctl", "list-timers", "--no-pager"]).stdout
    assert box.run(["test", "-x", "/usr/lib/systemd/system-generators/tracker-backup-generator"]).returncode == 0
    # The restore drill's timer follows the same switch, on [schedule] drill_on_calendar.
    assert box.run(["systemctl", "is-active", "tracker-backup-drill.timer"], check=False).stdout.strip() == "active"
    assert show(box, "tracker-backup-drill.timer", "TimersCalendar")["TimersCalendar"].count("OnCalendar=") == 1
    box.run(["test", "-f", "/usr/share/man/man8/tracker-backup.8.gz"])


def test_service_backs_up_live_db_with_low_priority_and_progress(tracker):
    box = tracker
    before = json.loads(box.run(["cat", STATS]).stdout)["ops"]
    box.run(["systemctl", "start", "--no-block", "tracker-backup.service"])
    # While it runs (rate_limit = 1 MB/s keeps it busy a few seconds): its priorities
    # as the kernel sees them, and the STATUS= progress systemd received.
    pid = wait_for(lambda: int(show(box, "tracker-backup", "MainPID")["MainPID"] or 0),
                   timeout=20, what="MainPID of tracker-backup")
    stat = box.run(["cat", f"/proc/{pid}/stat"]).stdout
    fields = stat.rsplit(")", 1)[1].split()
    nice, policy = int(fields[16]), int(fields[38])  # stat fields 19 and 41
    ionice = box.run(["ionice", "-p", str(pid)]).stdout.strip()
    status_text = wait_for(lambda: show(box, "tracker-backup", "StatusText")["StatusText"],
                           timeout=20, what="STATUS= from the agent")
    print(f"service pid {pid}: nice {nice}, policy {policy}, ionice {ionice!r}, "
          f"status {status_text!r}")
    assert nice == 10
    assert policy == 3  # SCHED_BATCH
    assert ionice == "best-effort: prio 7"
    wait_for(lambda: show(box, "tracker-backup", "ActiveState")["ActiveState"] in ("inactive", "failed"),
             timeout=120, what="the backup to finish")
    props = show(box, "tracker-backup", "Result", "ExecMainStatus")
    assert props == {"Result": "success", "ExecMainStatus": "0"}, props

    snaps = snapshots(box)
    assert len(snaps) == 1 and snaps[0]["good"]
    assert box.run(["tracker-backup", "verify", snaps[0]["id"]]).returncode == 0
    # The writer (uid 1000) is unharmed: still running, no errors, files still its own.
    stats = json.loads(box.run(["cat", STATS]).stdout)
    assert stats["errors"] == 0 and stats["ops"] > before, stats
    assert box.run(["systemctl", "is-active", "tracker-writer"], check=False).stdout.strip() == "active"
    owners = box.sh(f"stat -c '%u %a %n' {DB}*").stdout.split("\n")
    assert all(line.startswith("1000 ") for line in owners if line), owners
    # Journal: the structured success message, found by its MESSAGE_ID.
    entries = journal_entries(box, f"MESSAGE_ID={MESSAGE_IDS['run-succeeded']}", unit=SERVICE)
    assert len(entries) == 1, entries
    entry = entries[0]
    assert entry["SNAPSHOT"] == snaps[0]["id"]
    assert int(entry["BYTES"]) > 0 and float(entry["DURATION_SEC"]) > 0
    assert entry["PRIORITY"] == "6" and entry["SYSLOG_IDENTIFIER"] == "tracker-backup"
    # Retention ran as the ExecStartPost= step, after the successful backup.
    assert len(journal_entries(box, f"MESSAGE_ID={MESSAGE_IDS['pruned']}", unit=SERVICE)) == 1
    # Backup files are private.
    modes = box.sh("stat -c '%a' /srv/backups/tracker /srv/backups/tracker/*/ | sort -u").stdout.split()
    assert set(modes) == {"700"}, modes


def test_status_reports_timer_and_next_run_through_dbus(tracker):
    data = json.loads(tracker.run(["tracker-backup", "status", "--json"]).stdout)
    assert data["timer"] == "active (waiting)", data
    assert data["next_run"] and data["next_run"].endswith("03:00:00Z"), data
    assert data["schedule_interval_sec"] == 86400
    assert data["warnings"] == [], data


def test_timer_schedule_follows_config_on_daemon_reload(tracker):
    box = tracker
    listed = box.run(["systemctl", "list-timers", "--no-pager", "tracker-backup.timer"]).stdout
    assert re.search(r"\d{4}-\d\d-\d\d 03:00:00 UTC .*tracker-backup\.timer", listed), listed
    assert "*-*-* 03:00:00" in show(box, "tracker-backup.timer", "TimersCalendar")["TimersCalendar"]
    box.write(CONF, config_text(on_calendar="Mon *-*-* 05:30:00"))
    box.run(["systemctl", "daemon-reload"])
    calendar = show(box, "tracker-backup.timer", "TimersCalendar")["TimersCalendar"]
    assert "Mon *-*-* 05:30:00" in calendar, calendar
    listed = box.run(["systemctl", "list-timers", "--no-pager", "tracker-backup.timer"]).stdout
    assert re.search(r"Mon \d{4}-\d\d-\d\d 05:30:00 UTC .*tracker-backup\.timer", listed), listed
    print(listed)


def test_disabled_config_stops_the_timer_and_manual_start_still_works(tracker):
    box = tracker
    box.write(CONF, config_text(enabled="no"))
    box.run(["systemctl", "daemon-reload"])
    wait_for(lambda: box.run(["systemctl", "is-active", "tracker-backup.timer"],
                             check=False).stdout.strip() == "inactive", timeout=20, what="timer to stop",
             diagnose=lambda: box.sh("systemctl status --no-pager tracker-backup-schedule.path "
                                     "tracker-backup-schedule.service tracker-backup.timer; "
                                     "journalctl -b --no-pager | tail -40", check=False).stdout)
    assert box.run(["test", "-e", "/run/systemd/generator/timers.target.wants/tracker-backup.timer"],
                   check=False).returncode != 0
    # The timer can stop before journald has stored apply-schedule's output (a loaded host).
    wait_for(lambda: "tracker-backup.timer: inactive" in journal_text(box, "tracker-backup-schedule"),
             timeout=20, what="apply-schedule's report in the journal")
    assert box.run(["systemctl", "is-active", "tracker-backup-drill.timer"], check=False).stdout.strip() == "inactive"
    # An inactive timer has no next elapse (systemd: UINT64_MAX): "not scheduled", not a crash.
    status = box.run(["tracker-backup", "status", "--json"], check=False)
    assert status.returncode == 0, status.stdout + status.stderr
    assert json.loads(status.stdout)["next_run"] is None
    text = box.run(["tracker-backup", "status"], check=False)
    assert text.returncode == 0 and "next run:     not scheduled" in text.stdout, text.stdout
    before = len(snapshots(box))
    box.run(["systemctl", "start", "tracker-backup.service"], timeout=180)
    assert show(box, "tracker-backup", "Result")["Result"] == "success"
    assert len(snapshots(box)) == before + 1


def test_enable_and_disable_commands_apply_at_once_and_keep_comments(tracker):
    box = tracker
    out = box.run(["tracker-backup", "enable"]).stdout
    assert "tracker-backup.timer: active" in out, out
    assert box.run(["systemctl", "is-active", "tracker-backup.timer"], check=False).stdout.strip() == "active"
    text = box.run(["cat", CONF]).stdout
    assert "enabled = yes   ; the switch" in text and text.startswith("; e2e test configuration")
    assert "tracker-backup.timer" in box.run(["ls", "/run/systemd/generator/timers.target.wants"]).stdout
    out = box.run(["tracker-backup", "disable"]).stdout
    assert "tracker-backup.timer: inactive" in out, out
    assert "enabled = no   ; the switch" in box.run(["cat", CONF]).stdout
    box.run(["tracker-backup", "enable"])


def test_a_restore_from_a_shell_leaves_an_audit_entry_in_the_journal(tracker):
    box = tracker
    snap = snapshots(box)[0]["id"]
    box.run(["env", "SUDO_USER=alice", "tracker-backup", "restore", snap, "--kind", "files",
             "--to", "/var/tmp/audit-restore"], timeout=120)
    entries = journal_entries(box, "TRACKER_BACKUP_EVENT=audit")
    mine = [e for e in entries if e.get("TARGET") == "/var/tmp/audit-restore"]
    assert len(mine) == 1, entries
    entry = mine[0]
    assert (entry["AUDIT_ACTION"], entry["RESULT"], entry["SNAPSHOT"], entry["KINDS"]) == (
        "restore", "ok", snap, "files")
    assert (entry["AUDIT_USER"], entry["AUDIT_UID"], entry["SUDO_USER"]) == ("root", "0", "alice")
    assert entry["MESSAGE_ID"] == MESSAGE_IDS["audit"]


def test_failed_backup_fails_the_unit_logs_an_error_event_and_never_prunes(tracker):
    box = tracker
    pruned = len(journal_entries(box, f"MESSAGE_ID={MESSAGE_IDS['pruned']}", unit=SERVICE))
    count = len(snapshots(box))
    box.write(CONF, config_text().replace(DB, "/opt/torrust/storage/tracker/lib/database/gone.db"))
    box.run(["systemctl", "daemon-reload"])
    assert box.run(["systemctl", "start", "tracker-backup.service"], check=False, timeout=120).returncode != 0
    assert show(box, "tracker-backup", "Result", "ExecMainStatus") == \
        {"Result": "exit-code", "ExecMainStatus": "1"}
    failures = journal_entries(box, f"MESSAGE_ID={MESSAGE_IDS['run-failed']}", unit=SERVICE)
    assert len(failures) == 1 and failures[0]["PRIORITY"] == "3", failures
    assert "gone.db" in failures[0]["MESSAGE"], failures[0]["MESSAGE"]
    assert len(journal_entries(box, f"MESSAGE_ID={MESSAGE_IDS['pruned']}", unit=SERVICE)) == pruned  # no ExecStartPost
    assert len(snapshots(box)) == count
    box.write(CONF, config_text())
    box.run(["systemctl", "daemon-reload"])


def test_mysql_password_file_reaches_the_hardened_service_as_a_credential(tracker):
    box = tracker
    box.write("/etc/tracker-backup/mysql.password", "s3cret-e2e\n", mode="0600")
    box.write(CONF, config_text(extra="[mysql]\ndatabase = torrust_tracker\n"
                                      "socket = /run/mysqld/mysqld.sock\n"))
    box.run(["systemctl", "daemon-reload"])
    unit = box.run(["systemctl", "cat", "tracker-backup.service"]).stdout
    assert "LoadCredential=mysql-password:/etc/tracker-backup/mysql.password" in unit
    since = box.run(["date", "+%Y-%m-%d %H:%M:%S"]).stdout.strip()
    box.run(["systemctl", "start", "tracker-backup.service"], check=False, timeout=120)
    # No MySQL server here, so the run fails, but in the agent (exit 1), not in systemd's
    # credential setup (243/CREDENTIALS): the credential was delivered under the sandbox.
    assert show(box, "tracker-backup", "ExecMainStatus")["ExecMainStatus"] == "1"
    failures = journal_entries(box, f"MESSAGE_ID={MESSAGE_IDS['run-failed']}", "--since", since, unit=SERVICE)
    assert failures and "mysql" in failures[-1]["MESSAGE"], failures
    logs = box.run(["journalctl", "--no-pager", "-o", "verbose", "--since", since]).stdout
    assert "s3cret-e2e" not in logs
    box.run(["rm", "/etc/tracker-backup/mysql.password"])
    box.write(CONF, config_text())
    box.run(["systemctl", "daemon-reload"])


def test_broken_config_fails_the_unit_with_the_error_in_the_journal(tracker):
    box = tracker
    box.write(CONF, config_text(rate_limit="fast"))
    box.run(["systemctl", "daemon-reload"])  # the generator must survive it
    assert box.run(["systemctl", "is-system-running"], check=False).stdout.strip() in ("running", "degraded")
    since = box.run(["date", "+%Y-%m-%d %H:%M:%S"]).stdout.strip()
    proc = box.run(["systemctl", "start", "tracker-backup.service"], check=False, timeout=120)
    assert proc.returncode != 0
    props = show(box, "tracker-backup", "Result", "ExecMainStatus")
    assert props == {"Result": "exit-code", "ExecMainStatus": "2"}, props
    errors = journal_entries(box, f"MESSAGE_ID={MESSAGE_IDS['config-error']}", "--since", since, unit=SERVICE)
    assert errors, "no config-error entry in the journal"
    message = errors[-1]["MESSAGE"]
    assert "/etc/tracker-backup/tracker-backup.conf" in message
    assert "[backup] rate_limit = 'fast'" in message and "expected a number" in message, message
    assert errors[-1]["PRIORITY"] == "3"
    # The generator logged the same problem and fell back to the packaged defaults.
    boot_log = box.run(["journalctl", "-b", "--no-pager", "-o", "cat", "-t", "tracker-backup-generator"]).stdout
    assert re.search(r"rate_limit = 'fast'.*falling back", boot_log)
    dropin = box.run(["cat", "/run/systemd/generator/tracker-backup.timer.d/"
                      "50-tracker-backup-config.conf"]).stdout
    assert "OnCalendar=daily" in dropin
    box.write(CONF, config_text())
    box.run(["systemctl", "daemon-reload"])


def test_sigkill_inside_a_maintenance_window_still_restarts_the_tracker(tracker):
    """ExecStopPost= (window-recover) runs start_command when the run died with the tracker down."""
    box = tracker
    dbdir = "/opt/torrust/storage/tracker/lib/database"
    rollback_db, window_log = f"{dbdir}/rollback.db", f"{dbdir}/window.log"
    box.run(["python3", "-c",
             "import sys; sys.path.insert(0, '/mnt/tests');"
             "from pathlib import Path; from support.tracker_db import create_tracker_db;"
             f"create_tracker_db(Path('{rollback_db}'), rows=30000, wal=False, pad=100)"])
    for name in ("stop", "start"):
        box.write(f"/usr/local/bin/{name}-tracker", f"#!/bin/sh\necho {name} >> {window_log}\n",
                  mode="0755")
    box.write(CONF, config_text(rate_limit="1").replace(
        DB, rollback_db + "\nmax_lock = 10ms\nstop_command = /usr/local/bin/stop-tracker\n"
                          "start_command = /usr/local/bin/start-tracker"))
    box.run(["systemctl", "daemon-reload"])
    box.run(["systemctl", "start", "--no-block", "tracker-backup.service"])
    wait_for(lambda: "stop" in box.run(["cat", window_log], check=False).stdout,
             timeout=20, what="the maintenance window to open")
    time.sleep(0.5)
    box.run(["systemctl", "kill", "--signal=SIGKILL", "tracker-backup.service"])
    wait_for(lambda: show(box, "tracker-backup", "ActiveState")["ActiveState"] in ("inactive", "failed"),
             timeout=60, what="the killed run to end")
    assert box.run(["cat", window_log]).stdout.split() == ["stop", "start"]
    assert show(box, "tracker-backup", "Result")["Result"] == "signal"
    log = box.run(["journalctl", "--no-pager", "-o", "cat", "-u", "tracker-backup"]).stdout
    assert "running start_command now" in log
    box.sh(f"rm -f {rollback_db}* {window_log}")
    box.write(CONF, config_text())
    box.run(["systemctl", "daemon-reload"])


@pytest.mark.parametrize("unit", ["tracker-backup.service", "tracker-backup-drill.service"])
def test_security_exposure_of_installed_service_is_reported(tracker, unit):
    out = tracker.run(["systemd-analyze", "security", "--no-pager", unit]).stdout
    m = re.search(rf"Overall exposure level for {re.escape(unit)}: (\d+\.\d+)", out)
    assert m, out
    exposure = float(m.group(1))
    print(f"systemd-analyze security {unit} (installed, with generated drop-ins): exposure {exposure}")
    assert exposure <= 2.0


def test_purge_removes_config_and_units_but_keeps_backups(tracker):
    box = tracker
    count = len(snapshots(box))
    assert count >= 2
    box.sh("DEBIAN_FRONTEND=noninteractive apt-get purge -y -q tracker-backup", timeout=300)
    assert box.run(["test", "-e", "/etc/tracker-backup"], check=False).returncode != 0
    assert box.run(["test", "-e", "/usr/lib/systemd/system/tracker-backup.service"], check=False).returncode != 0
    load = show(box, "tracker-backup.timer", "LoadState", "ActiveState")
    assert load == {"LoadState": "not-found", "ActiveState": "inactive"}, load
    left = box.sh("ls -d /srv/backups/tracker/*/ | wc -l").stdout.strip()
    assert int(left) == count
