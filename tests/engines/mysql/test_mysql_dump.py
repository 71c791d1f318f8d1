"""The dump scanner, flavour detection, flag spelling and credential reading (no server needed).

MySQL 8 cannot run here (Debian has no MySQL server or client), so its
`--version` text and dump lines below are samples of what MySQL 8 prints;
everything MariaDB is also exercised for real in test_mysql.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tracker_backup.engines.mysql.backup import dump_flags
from tracker_backup.engines.mysql.client import (
    OPTION_FILE_ARG,
    MysqlClient,
    Tools,
    parse_tool_version,
    read_password,
)
from tracker_backup.engines.mysql.config import MysqlConfig
from tracker_backup.engines.mysql.dump_scan import scan
from tracker_backup.errors import SourceError

MARIADB_DUMP = b"/*M!999999\\- enable the sandbox mode */ \n" + b"""-- MariaDB dump 10.19  Distrib 10.11.19-MariaDB, for debian-linux-gnu (x86_64)
--
-- CHANGE MASTER TO MASTER_LOG_FILE='binlog.000003', MASTER_LOG_POS=1355;

DROP TABLE IF EXISTS `torrents`;
CREATE TABLE `torrents` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  PRIMARY KEY (`id`)
) ENGINE=InnoDB;
INSERT INTO `torrents` VALUES
(1,'a',1),
(2,'b\\'),(x',2),
(3,'c),\\n(',3);
INSERT INTO `torrents` VALUES
(4,'d',4);
CREATE TABLE `empty` (
  `id` int(11) NOT NULL
);
-- SET GLOBAL gtid_slave_pos='0-1-5';
/*!40101 SET COLLATION_CONNECTION=@OLD_COLLATION_CONNECTION */;

-- Dump completed on 2026-11-26 10:46:53
"""

MYSQL_DUMP = b"""-- MySQL dump 10.13  Distrib 8.0.36, for Linux (x86_64)
-- CHANGE REPLICATION SOURCE TO SOURCE_LOG_FILE='binlog.000042', SOURCE_LOG_POS=157;
CREATE TABLE `keys` (
  `id` int NOT NULL
);
INSERT INTO `keys` VALUES (1,'k),(1',0x28292C28),(2,'\\'',NULL),(3,'',3);
-- Dump completed on 2026-11-26 10:46:53
"""


def chunks(data: bytes, size: int):
    return [data[i:i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("size", [1, 7, 64, 1 << 20])
def test_scanner_counts_rows_of_mariadb_one_row_per_line_dumps_in_any_chunking(size):
    found = scan(chunks(MARIADB_DUMP, size))
    assert found.tables == ["torrents", "empty"]
    assert found.row_counts == {"torrents": 4, "empty": 0}
    assert found.binlog == {"file": "binlog.000003", "position": 1355}
    assert found.gtid == "0-1-5"
    assert found.header == "MariaDB"
    assert found.completed and found.problems(["torrents", "empty"]) == []


def test_scanner_counts_rows_of_mysql_single_line_inserts_with_tricky_strings():
    found = scan([MYSQL_DUMP])
    assert found.row_counts == {"keys": 3}
    assert found.binlog == {"file": "binlog.000042", "position": 157}
    assert found.header == "MySQL"
    assert found.problems(["keys"]) == []


def test_scanner_counts_inserts_that_name_their_columns():
    dump = (b"-- MySQL dump 10.13  Distrib 8.0.36\nCREATE TABLE `t` (\n  `a` int\n);\n"
            b"INSERT INTO `t` (`a`,`we``ird)`) VALUES (1,'x'),(2,'y');\n-- Dump completed\n")
    found = scan([dump])
    assert found.row_counts == {"t": 2} and found.problems(["t"]) == []


def test_scanner_reports_a_dump_that_stopped_part_way():
    cut = MARIADB_DUMP[:MARIADB_DUMP.index(b"(3,'c")]
    problems = scan([cut]).problems(["torrents", "empty"])
    assert any("trailer" in p for p in problems)
    assert any("no CREATE TABLE for empty" in p for p in problems)


def test_scanner_rejects_what_is_not_a_dump():
    problems = scan([b"hello\n-- Dump completed\n"]).problems()
    assert any("not a mysqldump file" in p for p in problems)


@pytest.mark.parametrize(("text", "flavour", "version"), [
    ("mariadb-dump  Ver 10.19 Distrib 10.11.19-MariaDB, for debian-linux-gnu (x86_64)",
     "mariadb", (10, 11, 19)),
    ("mariadb-dump from 11.4.2-MariaDB, client 10.19 for debian-linux-gnu (x86_64)",
     "mariadb", (11, 4, 2)),
    ("mysqldump  Ver 8.0.36 for Linux on x86_64 (MySQL Community Server - GPL)", "mysql", (8, 0, 36)),
    ("mysqldump  Ver 10.13 Distrib 5.7.44, for Linux (x86_64)", "mysql", (5, 7, 44)),
])
def test_client_flavour_and_version_come_from_the_version_line(text, flavour, version):
    assert parse_tool_version(text) == (flavour, version)


def test_unknown_version_text_is_a_clear_error():
    with pytest.raises(SourceError, match="cannot tell the client's version"):
        parse_tool_version("sh: mysqldump: not found")


def _tools(flavour: str, version: tuple[int, ...]) -> Tools:
    dump = "mariadb-dump" if flavour == "mariadb" else "mysqldump"
    return Tools(dump, "mariadb" if flavour == "mariadb" else "mysql", flavour, version, "")


def test_mysql_8_gets_its_own_spelling_of_the_flags():
    flags = dump_flags(_tools("mysql", (8, 0, 36)), binlog=True)
    assert "--source-data=2" in flags and "--master-data=2" not in flags
    assert "--set-gtid-purged=OFF" in flags and "--column-statistics=0" in flags
    old = dump_flags(_tools("mysql", (8, 0, 20)), binlog=True)
    assert "--master-data=2" in old and "--source-data=2" not in old
    assert "--column-statistics=0" not in dump_flags(_tools("mysql", (5, 7, 44)), binlog=False)


def test_mariadb_flags_are_hot_and_complete_and_omit_mysql_only_options():
    flags = dump_flags(_tools("mariadb", (10, 11, 19)), binlog=True)
    for flag in ("--single-transaction", "--quick", "--routines", "--triggers", "--hex-blob",
                 "--no-tablespaces", "--master-data=2"):
        assert flag in flags
    assert not any(f.startswith(("--set-gtid-purged", "--column-statistics", "--source-data"))
                   for f in flags)
    assert "--master-data=2" not in dump_flags(_tools("mariadb", (10, 11, 19)), binlog=False)


def test_password_travels_only_in_the_option_block_on_stdin():
    password = 'p"w\\d#x\n;y'
    cfg = MysqlConfig(database="torrust_tracker", socket=Path("/run/mysqld/mysqld.sock"),
                      user="tracker_backup")
    client = MysqlClient(cfg, password)
    argv = client.argv("mariadb-dump", "--single-transaction", "torrust_tracker")
    assert not any("p\"w" in a or "#x" in a for a in argv)
    assert OPTION_FILE_ARG in argv and "--socket=/run/mysqld/mysqld.sock" in argv
    block = client.option_block().decode()
    assert 'password="p\\"w\\\\d#x\\n;y"' in block and block.endswith("#end-of-options\n")


def test_password_file_readable_by_others_is_refused(tmp_path):
    pw = tmp_path / "mysql.password"
    pw.write_text("secret\n")
    os.chmod(pw, 0o644)
    cfg = MysqlConfig(database="d", password_file=pw)
    with pytest.raises(SourceError, match=r"mode 0644: expected 0600 .*chmod 600"):
        read_password(cfg)
    os.chmod(pw, 0o600)
    assert read_password(cfg) == "secret"


def test_systemd_credential_is_used_when_no_password_file_is_set(tmp_path, monkeypatch):
    (tmp_path / "mysql-password").write_text("from-credential\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert read_password(MysqlConfig(database="d")) == "from-credential"
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    assert read_password(MysqlConfig(database="d")) is None


def test_missing_or_empty_password_file_is_a_clear_error(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        read_password(MysqlConfig(database="d", password_file=tmp_path / "nope"))
    empty = tmp_path / "empty"
    empty.write_text("\n")
    os.chmod(empty, 0o600)
    with pytest.raises(SourceError, match="is empty"):
        read_password(MysqlConfig(database="d", password_file=empty))


def test_a_missing_exec_prefix_command_is_named_with_its_key(tmp_path):
    cfg = MysqlConfig(database="d", exec_prefix=("no-such-docker", "compose", "exec", "-T", "mysql"))
    with pytest.raises(SourceError, match=r"\[mysql\] exec_prefix = no-such-docker compose exec -T "
                                          r"mysql: .*command not found: no-such-docker"):
        MysqlClient(cfg, None).tools()


def test_missing_client_tools_name_the_package_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH without mariadb-dump or mysqldump
    with pytest.raises(SourceError, match=r"no mariadb-dump or mysqldump .*install mariadb-client"):
        MysqlClient(MysqlConfig(database="d"), None).tools()
