"""Configuration: typed defaults, and a clear error (file, section, key, value, expected) for every mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import Cli
from tracker_backup.config import load_config, parse_duration, render_config
from tracker_backup.errors import EXIT_USAGE, ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tb.conf"
    path.write_text(text)
    return path


MINIMAL = "[sqlite]\ndatabase = /srv/tracker.db\n"


def test_minimal_config_gets_documented_defaults(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL))
    assert cfg.backup.path == Path("/var/backups/tracker-backup")
    assert (cfg.backup.compression, cfg.backup.verify, cfg.backup.rate_limit) == ("zstd", "full", 0)
    assert (cfg.retention.keep_days, cfg.retention.keep_last) == (7, 3)
    assert cfg.sqlite.max_lock == 2.0 and not cfg.sqlite.has_maintenance_window
    assert cfg.files is None and cfg.mysql is None
    assert cfg.source_names == ["sqlite"]


def test_full_config_is_parsed_into_typed_values(tmp_path):
    cfg = load_config(write(tmp_path, """
[backup]
path = /mnt/backup/tracker   ; inline comment
compression = none
verify = quick
rate_limit = 12.5
require_mountpoint = yes
[retention]
keep_days = 0
keep_last = 5
keep_daily = 7
keep_weekly = 4
keep_monthly = 6
[sqlite]
database = /opt/torrust/storage/tracker/lib/database/tracker.db
max_lock = 500ms
stop_command = docker compose -f "/opt/torrust/docker compose.yml" stop tracker
start_command = docker compose -f "/opt/torrust/docker compose.yml" start tracker
[files]
root = /opt/torrust/storage
include = tracker/etc/** caddy/etc/**
exclude = tracker/log/**
"""))
    assert cfg.backup.path == Path("/mnt/backup/tracker")
    assert cfg.backup.rate_limit_bytes == 12_500_000 and cfg.backup.require_mountpoint
    assert cfg.retention.keep_monthly == 6 and cfg.retention.keep_days == 0
    assert cfg.sqlite.max_lock == 0.5
    assert cfg.sqlite.stop_command[3] == "/opt/torrust/docker compose.yml"
    assert cfg.files.include == ("tracker/etc/**", "caddy/etc/**")
    assert cfg.source_names == ["sqlite", "files"]
    assert "max_lock = 500ms" in render_config(cfg)  # as written, not 0.5


@pytest.mark.parametrize("text,expected", [
    ("2s", 2.0), ("500ms", 0.5), ("10m", 600.0), ("1.5h", 5400.0), ("3", 3.0), ("1d", 86400.0),
])
def test_durations_accept_units(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text,fragment", [
    ("[backup]\npath = relative/dir\n" + MINIMAL, "[backup] path = 'relative/dir': expected an absolute path"),
    ("[backup]\ncompression = gzip\n" + MINIMAL, "[backup] compression = 'gzip': expected zstd or none"),
    ("[backup]\nverify = sometimes\n" + MINIMAL, "[backup] verify = 'sometimes': expected full or quick"),
    ("[backup]\nrate_limit = fast\n" + MINIMAL, "[backup] rate_limit = 'fast': expected a number"),
    ("[backup]\nrate_limit = -1\n" + MINIMAL, "[backup] rate_limit = '-1': expected a number"),
    ("[backup]\nrequire_mountpoint = maybe\n" + MINIMAL, "require_mountpoint = 'maybe': expected yes or no"),
    ("[backup]\npaht = /x\n" + MINIMAL, "[backup] unknown key 'paht'"),
    ("[retention]\nkeep_last = 0\n" + MINIMAL, "[retention] keep_last = '0': expected a whole number from 1"),
    ("[retention]\nkeep_days = seven\n" + MINIMAL, "[retention] keep_days = 'seven': expected a whole number"),
    ("[sqlite]\ndatabase = /x.db\nmax_lock = 2 parsecs\n", "[sqlite] max_lock = '2 parsecs': expected a duration"),
    ("[sqlite]\nmax_lock = 2s\n", "[sqlite] database is missing"),
    ("[sqlite]\ndatabase = /x.db\nstop_command = systemctl stop tracker\n",
     "[sqlite] start_command = '': expected both stop_command and start_command"),
    ("[sqlite]\ndatabase = /x.db\nstop_command = 'unbalanced\nstart_command = x\n",
     "[sqlite] stop_command = \"'unbalanced\": expected a command line"),
    ("[files]\nroot = /srv\ninclude = ../etc/**\n", "[files] include = '../etc/**': expected globs relative"),
    ("[files]\ninclude = **\n", "[files] root is missing"),
    ("[backup]\npath = /var/backups\n", "no source configured"),
    ("[sqlte]\ndatabase = /x\n", "unknown section [sqlte]"),
    ("database = /x\n", "a key before any [section] header"),
    (MINIMAL + "[sqlite]\ndatabase = /y\n", "section [sqlite] appears twice"),
    ("[sqlite]\ndatabase = /x\ndatabase = /y\n", "[sqlite] database is set twice"),
    ("[schedule]\non_calendar = every full moon\n" + MINIMAL, "[schedule] on_calendar = 'every full moon'"),
    ("[mysql]\ndatabase = torrust tracker\n", "[mysql] database = 'torrust tracker': expected a name"),
])
def test_every_bad_value_names_file_section_key_value_and_expectation(tmp_path, text, fragment):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    assert fragment in message, message


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_config(tmp_path / "nope.conf")


def test_binary_file_is_a_config_error(tmp_path):
    path = tmp_path / "tb.conf"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="not valid UTF-8"):
        load_config(path)


def test_cli_reports_config_errors_with_exit_2_and_no_traceback(tmp_path):
    path = write(tmp_path, "[backup]\ncompresion = zstd\n" + MINIMAL)
    for command in ("run", "list", "status", "check-config", "prune", "verify"):
        proc = Cli(path)(command)
        assert proc.returncode == EXIT_USAGE, (command, proc.stderr)
        assert "[backup] unknown key 'compresion'" in proc.stderr
        assert "Traceback" not in proc.stderr


def test_check_config_prints_the_effective_configuration(tmp_path):
    from support.tracker_db import create_tracker_db

    db = create_tracker_db(tmp_path / "tracker.db", rows=10)
    proc = Cli(write(tmp_path, f"[sqlite]\ndatabase = {db}\n"))("check-config", check=True)
    assert "[backup]\npath = /var/backups/tracker-backup" in proc.stdout
    assert "keep_last = 3" in proc.stdout and "configuration OK" in proc.stdout


def test_config_path_comes_from_the_environment_when_not_given(tmp_path):
    import os
    import subprocess
    import sys

    from conftest import agent_env

    path = write(tmp_path, "[backup]\nverify = bogus\n" + MINIMAL)
    proc = subprocess.run([sys.executable, "-m", "tracker_backup", "check-config"],
                          capture_output=True, text=True, env=agent_env(TRACKER_BACKUP_CONFIG=str(path)))
    assert proc.returncode == EXIT_USAGE and str(path) in proc.stderr
    assert os.environ.get("TRACKER_BACKUP_CONFIG") is None
