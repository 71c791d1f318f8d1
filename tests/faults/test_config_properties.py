"""Bad configuration, property-based: any value, any file → loaded, or one clear error naming the key.

Never a traceback, never another exception type, and from the command line
always exit 2. The valid keys are discovered from the agent's own "unknown key"
error, so the properties follow config.py as it grows.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import agent_env
from tracker_backup.config import Config, load_config
from tracker_backup.errors import ConfigError

BASE = {
    "backup": {"path": "/var/backups/tracker-backup"},
    "retention": {"keep_last": "3"},
    "schedule": {"on_calendar": "daily"},
    "sqlite": {"database": "/opt/torrust/storage/tracker/lib/database/tracker.db"},
    "files": {"root": "/opt/torrust/storage"},
    "mysql": {"database": "torrust_tracker"},
}
# Rules that tie two keys together: an error may name the partner key instead.
PARTNERS = {
    ("sqlite", "stop_command"): ("start_command",),
    ("sqlite", "start_command"): ("stop_command",),
    ("mysql", "host"): ("socket",),
    ("mysql", "socket"): ("host",),
    ("mysql", "tables"): ("exclude_tables",),
    ("mysql", "exclude_tables"): ("tables",),
}
PROPS = settings(max_examples=200, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.too_slow])


def _render(sections: dict[str, dict[str, str]]) -> str:
    return "".join(f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items())
                   for name, keys in sections.items())


def _load_text(text: str) -> Config:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tb.conf"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        return load_config(path)


def _keys_of(section: str) -> list[str]:
    """The keys config.py accepts in a section, from its own 'unknown key' error."""
    body = {section: {**BASE[section], "zz_no_such_key": "1"}}
    if section not in ("sqlite", "files", "mysql"):
        body["files"] = BASE["files"]
    try:
        _load_text(_render(body))
    except ConfigError as exc:
        found = re.search(r"expected one of (.*)$", str(exc))
        assert found, exc
        return [k.strip() for k in found.group(1).split(",")]
    raise AssertionError(f"[{section}] accepted an unknown key")


KEYS = [(section, key) for section in BASE for key in _keys_of(section)]

# Single-line values of every kind: digits, units, paths, quotes, unicode, control characters.
VALUES = st.one_of(
    st.text(alphabet=st.characters(blacklist_characters="\n\r", blacklist_categories=("Cs",)),
            max_size=40),
    st.from_regex(r"-?[0-9]{0,12}(\.[0-9]{0,4})?(e[0-9]{1,3})?[ ]*(ms|s|m|h|d|min|sec|x)?",
                  fullmatch=True),
    st.sampled_from(["", " ", "yes", "no", "0", "-1", "1e400", "nan", "inf", "/", "//", "..",
                     "relative/path", "/a/../..", "'unbalanced", '"', "\\", "zstd", "none",
                     "full", "quick", "1_000", "٣", "\x00", "/tmp/a\x00b", "**", "/abs/**",
                     "../x", "*-*-* 03:00:00", "hourly", "not a calendar"]),
)


def _assert_names(exc: ConfigError, file_hint: str, section: str, key: str) -> None:
    text = str(exc)
    assert text.startswith(file_hint), text
    assert f"[{section}]" in text, text
    names = (key, *PARTNERS.get((section, key), ()))
    assert any(n in text for n in names), f"error does not name {key}: {text}"
    assert "\n" not in text.strip(), text


@pytest.mark.parametrize("section", list(BASE))
def test_any_value_of_any_key_loads_or_fails_naming_section_and_key(section):
    keys = [k for s, k in KEYS if s == section]

    @PROPS
    @given(key=st.sampled_from(keys), value=VALUES)
    def check(key, value):
        sections = {section: {**BASE[section], key: value}}
        if section not in ("sqlite", "files", "mysql"):
            sections["files"] = BASE["files"]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "tb.conf"
            path.write_text(_render(sections), encoding="utf-8", errors="surrogatepass")
            try:
                config = load_config(path)
            except ConfigError as exc:
                _assert_names(exc, str(path), section, key)
                return
        # Loaded: what the agent will use must be sane, whatever was written.
        if config.backup.path:
            assert config.backup.path.is_absolute() and "\x00" not in str(config.backup.path)
        assert config.retention.keep_last >= 1
        for p in (getattr(config.sqlite, "database", None), getattr(config.files, "root", None)):
            assert p is None or (p.is_absolute() and "\x00" not in str(p))

    check()


LINES = st.one_of(
    st.sampled_from(["[backup]", "[sqlite]", "[files]", "[retention]", "[nosuch]", "[", "]",
                     "path = /x", "root = /srv", "database = /d.db", "keep_last = 0",
                     "keep_last = 2", "key", "= value", "  indented = 1", "; comment",
                     "# comment", "[backup", "include = ..", "%(x)s = 1"]),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30),
)


@settings(max_examples=300, deadline=None, database=None)
@given(lines=st.lists(LINES, max_size=12))
def test_any_file_loads_or_fails_with_a_config_error_naming_the_file(lines):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tb.conf"
        path.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
        try:
            load_config(path)
        except ConfigError as exc:
            assert str(exc).startswith(str(path)), exc


@settings(max_examples=200, deadline=None, database=None)
@given(data=st.binary(max_size=200))
def test_any_bytes_load_or_fail_with_a_config_error(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tb.conf"
        path.write_bytes(data)
        try:
            load_config(path)
        except ConfigError as exc:
            assert str(exc).startswith(str(path)), exc


BAD_FOR_CLI = st.sampled_from([
    ("backup", "compression", "lz4"), ("backup", "rate_limit", "fast"),
    ("backup", "path", "relative"), ("backup", "require_mountpoint", "maybe"),
    ("retention", "keep_last", "0"), ("retention", "keep_days", "-3"),
    ("sqlite", "max_lock", "2 parsecs"), ("sqlite", "stop_command", "'unclosed"),
    ("files", "include", "../etc/**"), ("backup", "verify", "paranoid"),
    ("backup", "path", "/tmp/a\x00b"), ("sqlite", "busy_timeout", "1e400"),
])


@settings(max_examples=12, deadline=None, database=None)
@given(bad=BAD_FOR_CLI, command=st.sampled_from(["run", "check-config", "list", "verify"]))
def test_bad_value_on_the_command_line_exits_2_naming_the_key_without_traceback(bad, command):
    section, key, value = bad
    sections = {"backup": dict(BASE["backup"]), "sqlite": dict(BASE["sqlite"]),
                "files": dict(BASE["files"])}
    sections.setdefault(section, {})[key] = value
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tb.conf"
        path.write_text(_render(sections))
        proc = subprocess.run([sys.executable, "-m", "tracker_backup", "--config", str(path),
                               command], capture_output=True, text=True, timeout=60,
                              env=agent_env())
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert f"[{section}] {key}" in proc.stderr or f"[{section}] " in proc.stderr, proc.stderr
    assert str(path) in proc.stderr
