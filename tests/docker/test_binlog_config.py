"""`[mysql] continuous = yes` against a server without binary logging (MariaDB's default).

check-config and the archiver must refuse with the server setting to change (`log_bin`)
and, for an account that lacks them, the privileges to grant, in MariaDB's names.
"""

from __future__ import annotations

import pytest

from support.deployment import DATABASE
from tracker_backup.engines.mysql.binlog.archiver import BinlogArchiver
from tracker_backup.engines.mysql.config import MysqlConfig
from tracker_backup.errors import UsageError

pytestmark = [pytest.mark.docker, pytest.mark.mysql]
LOG_BIN = False


def test_check_config_names_log_bin_and_the_missing_privileges(host):
    host.dep.create_user("weak", "weak-pw", [f"SELECT, SHOW VIEW, TRIGGER ON `{DATABASE}`.*"])
    pw = host.etc / "weak.password"
    pw.write_text("weak-pw\n")
    pw.chmod(0o600)
    host.write_config(mysql="continuous = yes")
    text = host.config.read_text().replace("user = tracker_backup", "user = weak")
    text = text.replace(f"password_file = {host.password_file}", f"password_file = {pw}")
    host.config.write_text(text)
    try:
        out = host.agent("check-config")
    finally:
        host.write_config()
    both = out.stdout + out.stderr
    assert out.returncode != 0, both
    assert "log_bin" in both and "--log-bin" in both
    assert "GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'weak'@'localhost'" in both
    # The same configuration without continuous is fine: binlog needs are not asked for.
    assert host.agent("check-config").returncode == 0


def test_the_archiver_refuses_to_start_without_binary_logging(host, monkeypatch):
    for key in ("DOCKER_HOST", "DOCKER_CONFIG"):
        monkeypatch.setenv(key, host.dep.engine.env[key])
    cfg = MysqlConfig(database=DATABASE, user="tracker_backup", continuous=True,
                      exec_prefix=tuple(host.dep.exec_prefix.split()))
    archiver = BinlogArchiver(cfg, host.backups, password=host.password)
    with pytest.raises(UsageError, match="log_bin"):
        archiver.open()
    assert not (host.backups / "archive").exists() or not any((host.backups / "archive").iterdir())
