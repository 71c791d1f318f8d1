"""`enable` / `disable` / `apply-schedule`: one line of the config changes, the rest is kept."""

from __future__ import annotations

import os

import pytest

from conftest import write_config
from tracker_backup.commands.schedule import rewrite_enabled
from tracker_backup.config import load_config

BASE = """; operator notes at the top
[backup]
path = /srv/b   ; inline comment

[schedule]
# a comment inside the section
enabled = yes          ; no: timer not active
on_calendar = daily

[files]
root = /srv
"""


def test_rewrite_changes_only_the_enabled_value_and_keeps_its_comment():
    out = rewrite_enabled(BASE, False)
    assert out == BASE.replace("enabled = yes          ; no: timer not active",
                               "enabled = no          ; no: timer not active")
    assert rewrite_enabled(out, True) == BASE


def test_rewrite_inserts_into_an_existing_section_or_appends_one():
    text = "[schedule]\n;enabled = yes\non_calendar = daily\n[files]\nroot = /srv"
    out = rewrite_enabled(text, False)
    assert out == "[schedule]\nenabled = no\n;enabled = yes\non_calendar = daily\n[files]\nroot = /srv"
    assert rewrite_enabled("[files]\nroot = /srv", False) == "[files]\nroot = /srv\n\n[schedule]\nenabled = no\n"


def test_rewrite_ignores_enabled_keys_of_other_sections():
    text = "[mysql]\nenabled = yes\n[schedule]\non_calendar = daily\n"
    assert rewrite_enabled(text, False) == "[mysql]\nenabled = yes\n[schedule]\nenabled = no\non_calendar = daily\n"


@pytest.mark.parametrize("command, value", [("disable", False), ("enable", True)])
def test_cli_edits_the_file_keeps_mode_and_reports_no_systemd(tmp_path, fresh_cli, command, value):
    conf = write_config(tmp_path / "tb.conf", BASE.replace("enabled = yes", "enabled = " + ("no" if value else "yes")))
    os.chmod(conf, 0o640)
    proc = fresh_cli(conf)(command, check=True)
    assert load_config(conf).schedule.enabled is value
    assert "; operator notes at the top" in conf.read_text() and "# a comment inside the section" in conf.read_text()
    assert os.stat(conf).st_mode & 0o777 == 0o640
    assert f"[schedule] enabled = {'yes' if value else 'no'}" in proc.stdout
    assert "systemd is not running here" in proc.stdout
    assert not list(tmp_path.glob(".tb.conf.*")), "temporary file left behind"


def test_cli_refuses_a_broken_config_without_touching_it(tmp_path, fresh_cli):
    text = BASE.replace("on_calendar = daily", "on_calendar = nonsense oclock")
    conf = write_config(tmp_path / "tb.conf", text)
    proc = fresh_cli(conf)("disable")
    assert proc.returncode == 2
    assert "[schedule] on_calendar = 'nonsense oclock'" in proc.stderr
    assert conf.read_text() == text


def test_apply_schedule_without_systemd_is_a_clean_no_op(tmp_path, fresh_cli):
    conf = write_config(tmp_path / "tb.conf", BASE)
    proc = fresh_cli(conf)("apply-schedule", check=True)
    assert "systemd is not running here" in proc.stdout
    assert conf.read_text() == BASE
