"""A misspelled key or section is named with the closest valid one (issue 15, item 3)."""

from __future__ import annotations

import pytest

from conftest import write_config
from tracker_backup.config import load_config
from tracker_backup.errors import ConfigError


@pytest.mark.parametrize("text, unknown, suggestion", [
    ("[sqlite]\ndatabse = /opt/torrust/storage/tracker/lib/database/tracker.db\n",
     "'databse'", "'database'"),
    ("[backup]\npaht = /srv/b\n[files]\nroot = /srv\n", "'paht'", "'path'"),
    ("[mysql]\ndatabase = t\npasword_file = /etc/tracker-backup/mysql.password\n",
     "'pasword_file'", "'password_file'"),
])
def test_unknown_key_is_named_with_the_closest_valid_key_before_any_missing_key(
        tmp_path, text, unknown, suggestion):
    with pytest.raises(ConfigError) as exc:
        load_config(write_config(tmp_path / "tb.conf", text))
    message = str(exc.value)
    assert f"unknown key {unknown}" in message and f"did you mean {suggestion}?" in message
    assert "is missing" not in message
    assert str(tmp_path / "tb.conf") in message


def test_unknown_section_is_named_with_the_closest_valid_section(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown section \[sqllite\]: did you mean \[sqlite\]\?"):
        load_config(write_config(tmp_path / "tb.conf", "[sqllite]\ndatabase = /x.db\n"))


def test_a_key_far_from_every_valid_key_gets_the_list_not_a_guess(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load_config(write_config(tmp_path / "tb.conf", "[files]\nroot = /srv\nzzz = 1\n"))
    assert "unknown key 'zzz'" in str(exc.value) and "did you mean" not in str(exc.value)
    assert "expected one of" in str(exc.value)
