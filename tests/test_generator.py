"""The systemd generator: config → drop-ins, enablement links, the pending flag; never fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import agent_env, write_config
from tracker_backup import generator
from tracker_backup.config import load_config
from tracker_backup.engines.mysql import client as mysql_client

UNITS = Path(__file__).resolve().parent.parent / "units"


def conf(tmp_path: Path, text: str) -> Path:
    return write_config(tmp_path / "tb.conf", text)


def run_generator(tmp_path: Path, config: Path, record: Path | None = None):
    out = tmp_path / "gen"
    env = agent_env(TRACKER_BACKUP_CONFIG=str(config), SYSTEMD_LOG_TARGET="console",
                    TRACKER_BACKUP_SCHEDULE_RECORD=str(record or tmp_path / "run" / "applied"))
    proc = subprocess.run([sys.executable, "-m", "tracker_backup.generator", str(out), str(out) + ".early",
                           str(out) + ".late"], capture_output=True, text=True, env=env, timeout=60)
    return proc, out


def dropin(out: Path, unit: str) -> str:
    return (out / f"{unit}.d" / generator.DROPIN).read_text()


def test_schedule_and_writable_paths_come_from_the_config(tmp_path):
    cfg = conf(tmp_path, f"""
[backup]
path = {tmp_path}/backups
[schedule]
on_calendar = *-*-* 03:00:00
randomized_delay = 5m
drill_on_calendar = Sun 04:00
[sqlite]
database = /opt/torrust/storage/tracker/lib/database/tracker.db
""")
    proc, out = run_generator(tmp_path, cfg)
    assert proc.returncode == 0 and proc.stderr == ""
    timer = dropin(out, "tracker-backup.timer")
    assert "OnCalendar=\nOnCalendar=*-*-* 03:00:00\n" in timer  # the reset, then the value
    assert "RandomizedDelaySec=300s" in timer
    assert "OnCalendar=Sun 04:00" in dropin(out, "tracker-backup-drill.timer")
    service = dropin(out, "tracker-backup.service")
    assert f'ReadWritePaths="-{tmp_path}/backups"' in service
    assert 'ReadWritePaths="-/opt/torrust/storage/tracker/lib/database"' in service
    assert f'ExecStartPre=-+/bin/mkdir -p -m 0700 "{tmp_path}/backups"' in service
    assert "PrivateNetwork=yes" in service
    assert "LoadCredential" not in service
    drill = dropin(out, "tracker-backup-drill.service")  # the drill never writes the live DB dir
    assert f'ReadWritePaths="-{tmp_path}/backups"' in drill and "lib/database" not in drill
    assert "PrivateNetwork=yes" in drill


def test_enabled_timer_gets_a_wants_link_and_disabled_gets_none(tmp_path, monkeypatch):
    unit_dir = tmp_path / "lib"
    unit_dir.mkdir()
    (unit_dir / "tracker-backup.timer").write_text("[Timer]\nOnCalendar=daily\n")
    monkeypatch.setattr(generator, "UNIT_DIRS", (str(unit_dir),))
    for enabled, expect in (("yes", True), ("no", False)):
        config = load_config(conf(tmp_path, f"[schedule]\nenabled = {enabled}\n[files]\nroot = /srv\n"))
        out = tmp_path / f"out-{enabled}"
        generator.write_plan(generator.plan_for(config), out, record=tmp_path / f"rec-{enabled}")
        link = out / "timers.target.wants" / "tracker-backup.timer"
        assert link.is_symlink() is expect
        if expect:
            assert os.readlink(link) == str(unit_dir / "tracker-backup.timer")
        # Only units that exist get linked: the drill timer is absent here.
        assert not (out / "timers.target.wants" / "tracker-backup-drill.timer").exists()


def test_pending_flag_only_when_enabled_differs_from_the_applied_record(tmp_path):
    record = tmp_path / "run" / "applied"
    on = generator.plan_for(load_config(conf(tmp_path, "[files]\nroot = /srv\n")))
    generator.write_plan(on, tmp_path / "boot", record=record)  # boot: no record yet
    assert record.read_text() == "enabled=yes\n"
    assert not (tmp_path / "boot" / generator.PENDING_FLAG).exists()
    off = generator.plan_for(load_config(conf(tmp_path, "[schedule]\nenabled = no\n[files]\nroot = /srv\n")))
    generator.write_plan(off, tmp_path / "reload", record=record)
    assert (tmp_path / "reload" / generator.PENDING_FLAG).read_text() == "enabled=no\n"
    generator.write_applied_record(False, record)  # what apply-schedule does first
    generator.write_plan(off, tmp_path / "again", record=record)
    assert not (tmp_path / "again" / generator.PENDING_FLAG).exists()


@pytest.mark.parametrize("text, problem", [
    ("[backup]\npath = relative\n[files]\nroot = /srv\n", "[backup] path = 'relative'"),
    ("[schedule]\non_calendar = every tuesday-ish\n[files]\nroot = /srv\n", "[schedule] on_calendar"),
    ("[backup\n", "line 1"),
    (None, "configuration file not found"),
])
def test_broken_config_logs_the_error_and_falls_back_to_defaults_without_failing(tmp_path, text, problem):
    cfg = tmp_path / "tb.conf"
    if text is not None:
        cfg.write_text(text)
    proc, out = run_generator(tmp_path, cfg)
    assert proc.returncode == 0
    assert problem in proc.stderr and "falling back to the packaged defaults" in proc.stderr
    assert "OnCalendar=daily" in dropin(out, "tracker-backup.timer")
    service = dropin(out, "tracker-backup.service")
    assert 'ReadWritePaths="-/var/backups/tracker-backup"' in service
    assert "configuration invalid or missing" in service


def test_unwritable_output_dir_is_logged_not_fatal(tmp_path):
    cfg = conf(tmp_path, "[files]\nroot = /srv\n")
    blocker = tmp_path / "gen"
    blocker.write_text("a file where the output directory should be")
    proc, _ = run_generator(tmp_path, cfg)
    assert proc.returncode == 0
    assert "could not write drop-ins" in proc.stderr


def test_paths_with_spaces_quotes_and_percent_are_quoted_for_unit_files(tmp_path):
    weird = tmp_path / 'my "backups" 100%'
    config = load_config(conf(tmp_path, f"[backup]\npath = {weird}\n[files]\nroot = /srv\n"))
    out = tmp_path / "out"
    generator.write_plan(generator.plan_for(config), out, record=tmp_path / "rec")
    service = dropin(out, "tracker-backup.service")
    expected = str(weird).replace('"', '\\"').replace("%", "%%")
    assert f'ReadWritePaths="-{expected}"' in service


@pytest.mark.parametrize("host, lines", [
    ("localhost", []),
    ("10.0.0.7", ["IPAddressAllow=10.0.0.7"]),
    ("db.example.org", ["IPAddressDeny="]),
])
def test_mysql_over_tcp_keeps_the_network_with_an_allow_list(tmp_path, host, lines):
    config = load_config(conf(tmp_path, f"[mysql]\ndatabase = torrust_tracker\nhost = {host}\n"))
    plan = generator.plan_for(config)
    assert "PrivateNetwork=yes" not in plan.service_lines
    assert [line for line in plan.service_lines if not line.startswith("#")] == lines


def test_mysql_password_file_becomes_a_credential_only_when_present(tmp_path, monkeypatch):
    secret = tmp_path / "mysql.password"
    monkeypatch.setattr(mysql_client, "DEFAULT_PASSWORD_FILE", secret)
    config = load_config(conf(tmp_path, "[mysql]\ndatabase = torrust_tracker\n"))
    assert generator.plan_for(config).credential is None
    secret.write_text("pw\n")
    assert generator.plan_for(config).credential == secret


def test_paths_under_home_relax_protecthome_to_read_only(tmp_path):
    config = load_config(conf(tmp_path, "[backup]\npath = /home/ops/backups\n[files]\nroot = /srv\n"))
    assert "ProtectHome=read-only" in generator.plan_for(config).service_lines
    config = load_config(conf(tmp_path, "[files]\nroot = /opt/torrust/storage\n"))
    assert "ProtectHome=read-only" not in generator.plan_for(config).service_lines


def test_require_mountpoint_never_creates_the_backup_path(tmp_path):
    config = load_config(conf(tmp_path, "[backup]\npath = /mnt/backup\nrequire_mountpoint = yes\n"
                                        "[files]\nroot = /srv\n"))
    assert generator.plan_for(config).make_dirs == []


def test_generated_service_validates_and_scores_lower_with_systemd_analyze(tmp_path):
    """The unit plus the generated drop-in, as systemd would see them (offline)."""
    config = load_config(conf(tmp_path, "[files]\nroot = /srv\n"))
    units = tmp_path / "units"
    units.mkdir()
    (units / "tracker-backup.service").write_text((UNITS / "tracker-backup.service").read_text())
    generator.write_plan(generator.plan_for(config), units, record=tmp_path / "rec")
    proc = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager",
                           "tracker-backup.service"], cwd=units, capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin", "SYSTEMD_COLORS": "0"})
    assert "Overall exposure level for tracker-backup.service: 1.5" in proc.stdout, proc.stdout[-500:]


def test_installed_wrapper_never_fails_even_without_the_agent(tmp_path):
    wrapper = UNITS / "tracker-backup-generator"
    assert os.access(wrapper, os.X_OK)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": "/nonexistent"}  # -I: the agent is not importable
    proc = subprocess.run(["/usr/bin/python3", "-I", str(wrapper), str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0
    assert "cannot load the agent" in proc.stderr


DOCKER_MYSQL = ("[mysql]\ndatabase = torrust_tracker\n"
                "exec_prefix = docker compose -f {compose} exec -T mysql\n")


def _offline_exposure(tmp_path: Path, config: Path, unit: str) -> float:
    """systemd-analyze's exposure of `unit` with the drop-ins generated from `config`."""
    units = tmp_path / "units"
    units.mkdir()
    (units / unit).write_text((UNITS / unit).read_text())
    generator.write_plan(generator.plan_for(load_config(config)), units, record=tmp_path / "rec")
    proc = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", unit],
                          cwd=units, capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "SYSTEMD_COLORS": "0"})
    line = next(ln for ln in proc.stdout.splitlines() if "Overall exposure level" in ln)
    return float(line.split(":")[1].split()[0])


def test_docker_exec_prefix_in_the_deployers_layout_opens_nothing(tmp_path, monkeypatch):
    import tracker_backup.engines.mysql.docker_sandbox as ds

    monkeypatch.setattr(ds, "ROOT_DOCKER_CONFIG", tmp_path / "no-docker-config")
    config = load_config(conf(tmp_path, DOCKER_MYSQL.format(compose="/opt/torrust/docker-compose.yml")))
    plan = generator.plan_for(config)
    assert "PrivateNetwork=yes" in plan.service_lines  # /run/docker.sock needs no network
    assert not [ln for ln in plan.service_lines if ln.startswith(("ProtectHome", "BindReadOnly"))]


def test_docker_config_and_compose_file_in_root_are_bound_read_only_not_all_homes(tmp_path, monkeypatch):
    import tracker_backup.engines.mysql.docker_sandbox as ds

    docker_config = tmp_path / "dot-docker"
    docker_config.mkdir()
    monkeypatch.setattr(ds, "ROOT_DOCKER_CONFIG", docker_config)
    monkeypatch.setattr(ds, "HOME_DIRS", (*ds.HOME_DIRS, str(tmp_path)))
    config = load_config(conf(tmp_path, DOCKER_MYSQL.format(compose="/root/torrust/compose.yaml")))
    lines = generator.plan_for(config).service_lines
    assert "ProtectHome=tmpfs" in lines and "ProtectHome=read-only" not in lines
    assert 'BindReadOnlyPaths="-/root/torrust/compose.yaml"' in lines
    assert f'BindReadOnlyPaths="-{docker_config}"' in lines
    assert "PrivateNetwork=yes" in lines


@pytest.mark.parametrize("unit", ["tracker-backup.service", "tracker-backup-archive.service"])
def test_docker_exposure_is_no_worse_than_sqlite_only(tmp_path, monkeypatch, unit):
    import tracker_backup.engines.mysql.docker_sandbox as ds

    monkeypatch.setattr(ds, "ROOT_DOCKER_CONFIG", tmp_path / "no-docker-config")
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
    sqlite = _offline_exposure(tmp_path / "a", conf(tmp_path / "a", "[files]\nroot = /srv\n"), unit)
    docker = _offline_exposure(tmp_path / "b", conf(tmp_path / "b", DOCKER_MYSQL.format(
        compose="/opt/torrust/docker-compose.yml") + "continuous = yes\n"), unit)
    assert docker <= sqlite
