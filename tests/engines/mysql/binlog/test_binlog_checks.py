"""What binlog archiving needs, in each flavour's spelling (MySQL 8.4 from its documentation)."""

from __future__ import annotations

from tracker_backup.engines.mysql.binlog import checks, replay, stream
from tracker_backup.engines.mysql.client import Tools, parse_tool_version

GRANTEE = "'tracker_backup'@'localhost'"
MYSQL_84 = Tools("mysqldump", "mysql", "mysql", (8, 4, 3),
                 "mysqldump  Ver 8.4.3 for Linux on x86_64 (MySQL Community Server - GPL)")
MARIADB = Tools("mariadb-dump", "mariadb", "mariadb", (10, 11, 6),
                "mariadb-dump from 11.0, client 10.19 for debian-linux-gnu (x86_64)")


def test_binary_logging_off_names_the_server_setting():
    found = checks.problems(flavour="mariadb", log_bin=False, binlog_format="MIXED", checksum="CRC32",
                            privileges={"REPLICATION SLAVE", "BINLOG MONITOR"}, grantee=GRANTEE)
    assert len(found) == 1 and "log_bin" in found[0] and "--log-bin" in found[0]


def test_privileges_are_named_in_each_flavours_spelling():
    maria = checks.problems(flavour="mariadb", log_bin=True, binlog_format="ROW", checksum="CRC32",
                            privileges={"SELECT"}, grantee=GRANTEE)
    assert maria == [f"account {GRANTEE} lacks REPLICATION SLAVE, BINLOG MONITOR, which reading the "
                     f"binary log needs. Fix: GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO {GRANTEE};"]
    mysql = checks.problems(flavour="mysql", log_bin=True, binlog_format="ROW", checksum="CRC32",
                            privileges={"SELECT", "REPLICATION SLAVE"}, grantee=GRANTEE)
    assert len(mysql) == 1 and "lacks REPLICATION CLIENT" in mysql[0]
    # MySQL 8.0.22+ may report the new spelling; MariaDB's old alias also counts.
    assert not checks.problems(flavour="mysql", log_bin=True, binlog_format="ROW", checksum="CRC32",
                               privileges={"REPLICATION REPLICA", "REPLICATION CLIENT"}, grantee=GRANTEE)
    assert not checks.problems(flavour="mariadb", log_bin=True, binlog_format="ROW", checksum="NONE",
                               privileges={"ALL PRIVILEGES"}, grantee=GRANTEE)


def test_statement_formats_are_a_warning_not_an_error():
    assert checks.warnings(binlog_format="ROW") == []
    assert "binlog_format = MIXED" in checks.warnings(binlog_format="MIXED")[0]


def test_mysql_84_flag_and_statement_spellings():
    assert parse_tool_version(MYSQL_84.version_text) == ("mysql", (8, 4, 3))
    assert stream.binlog_tool(MYSQL_84) == "mysqlbinlog"
    assert stream.stream_args(MYSQL_84, "binlog.000007", 157, 2147483700) == [
        "--read-from-remote-server", "--raw", "--stop-never", "--connection-server-id=2147483700",
        "--start-position=157", "binlog.000007"]
    assert checks.status_statement("mysql", (8, 4, 3)) == "SHOW BINARY LOG STATUS"
    assert checks.status_statement("mysql", (8, 0, 36)) == "SHOW MASTER STATUS"
    args = replay.decoder_args(MYSQL_84, "torrust_tracker", "scratch", 1_800_000_000.0)
    assert args == ["env", "TZ=UTC", "mysqlbinlog", "--database=torrust_tracker",
                    "--rewrite-db=torrust_tracker->scratch", "--stop-datetime=2027-01-15 08:00:00",
                    "--skip-gtids", "-"]


def test_mariadb_flag_spellings():
    assert stream.binlog_tool(MARIADB) == "mariadb-binlog"
    assert "--stop-never-slave-server-id=5" in stream.stream_args(MARIADB, "binlog.000001", 4, 5)
    args = replay.decoder_args(MARIADB, "torrust_tracker", "torrust_tracker", None)
    assert args == ["env", "TZ=UTC", "mariadb-binlog", "--database=torrust_tracker",
                    "--loose-skip-gtid-strict-mode", "-"]


def test_tool_errors_are_classified_from_their_own_words():
    # MariaDB 10.11 (seen in tests/docker) and MySQL 8.4 (its error messages) wording.
    cases = {
        "ERROR: Got error reading packet from server: Could not find first log file name in binary "
        "log index file": "purged",
        "ERROR: Got error reading packet from server: Cannot replicate because the source purged "
        "required binary logs.": "purged",
        "ERROR: Got error reading packet from server: Binary log is not open": "off",
        "ERROR: Got error reading packet from server: Access denied; you need (at least one of) the "
        "REPLICATION SLAVE privilege(s) for this operation": "denied",
        "ERROR: Got error reading packet from server: Lost connection to server during query": "gone",
        "service \"mysql\" is not running": "gone",
    }
    for text, kind in cases.items():
        assert stream.classify_failure(text)[0] == kind, text


def test_replaying_row_events_needs_binlog_replay_or_its_mysql_names():
    assert "GRANT BINLOG REPLAY ON *.*" in checks.replay_problem(
        flavour="mariadb", privileges={"SELECT", "REPLICATION SLAVE"}, grantee=GRANTEE)
    assert "GRANT BINLOG_ADMIN ON *.*" in checks.replay_problem(
        flavour="mysql", privileges={"SELECT"}, grantee=GRANTEE)
    assert checks.replay_problem(flavour="mysql", privileges={"REPLICATION_APPLIER"}, grantee=GRANTEE) is None
    assert checks.replay_problem(flavour="mariadb", privileges={"BINLOG REPLAY"}, grantee=GRANTEE) is None


def test_drills_out_of_the_binlog_need_binlog_admin_or_its_mysql_names():
    note = checks.unlogged_drill_note(flavour="mariadb", privileges={"BINLOG MONITOR", "BINLOG REPLAY"},
                                      grantee="'tb'@'%'")
    assert note and "GRANT BINLOG ADMIN ON *.* TO 'tb'@'%';" in note and "PURGE BINARY LOGS" in note
    assert checks.unlogged_drill_note(flavour="mariadb", privileges={"BINLOG ADMIN"}, grantee="x") is None
    assert checks.unlogged_drill_note(flavour="mariadb", privileges={"SUPER"}, grantee="x") is None
    note = checks.unlogged_drill_note(flavour="mysql", privileges={"REPLICATION CLIENT"}, grantee="x")
    assert note and "GRANT SESSION_VARIABLES_ADMIN ON *.* TO x;" in note
    for enough in ("SESSION_VARIABLES_ADMIN", "SYSTEM_VARIABLES_ADMIN", "ALL PRIVILEGES"):
        assert checks.unlogged_drill_note(flavour="mysql", privileges={enough}, grantee="x") is None
