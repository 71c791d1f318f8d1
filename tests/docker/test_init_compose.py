"""`tracker-backup init` on a running compose deployment (real dockerd, MySQL in its container).

init reads .env's TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__DATABASE__{DRIVER,PATH} (the
tracker's own account), writes a config whose exec_prefix reaches the `mysql` service, and
its check-config connects through the container with that account; the config then backs
the database up.
"""

from __future__ import annotations

import stat
import subprocess
import sys

from support.deployment import DATABASE, TRACKER_PASSWORD


def agent(host, conf, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "tracker_backup", "--config", str(conf), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=host.agent.env)


def test_init_write_on_the_compose_deployment_checks_and_backs_up_mysql_in_its_container(
        host, tmp_path):
    env_file = host.dep.opt / ".env"
    env_file.write_text(env_file.read_text()
                        + "TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__DATABASE__DRIVER='mysql'\n")
    conf = tmp_path / "etc/tracker-backup.conf"
    proc = agent(host, conf, "init", "--storage", str(host.dep.storage), "--backup-path",
                 str(tmp_path / "backups"), "--write")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "configuration OK" in proc.stdout
    text = conf.read_text()
    assert f"exec_prefix = {host.dep.exec_prefix}" in text and f"database = {DATABASE}" in text
    assert TRACKER_PASSWORD not in text and TRACKER_PASSWORD not in proc.stdout + proc.stderr
    password_file = conf.parent / "mysql.password"
    assert password_file.read_text() == TRACKER_PASSWORD + "\n"
    assert stat.S_IMODE(password_file.stat().st_mode) == stat.S_IMODE(conf.stat().st_mode) == 0o600
    run = agent(host, conf, "run")
    assert run.returncode == 0, run.stderr
    snap = tmp_path / "backups" / run.stdout.strip()
    assert (snap / f"mysql/{DATABASE}.sql.zst").is_file()
