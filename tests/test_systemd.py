"""systemd glue off systemd: every call degrades cleanly; notify and journal speak the protocols."""

from __future__ import annotations

import socket

import pytest

from tracker_backup import systemd


def test_dbus_calls_raise_systemd_unavailable_when_not_booted_with_systemd(monkeypatch):
    monkeypatch.setattr(systemd, "booted", lambda: False)
    for call in (systemd.daemon_reload, lambda: systemd.start_unit(systemd.TIMER),
                 lambda: systemd.stop_unit(systemd.TIMER), systemd.timer_state):
        with pytest.raises(systemd.SystemdUnavailable, match="systemd is not running"):
            call()
    assert systemd.unit_file_exists(systemd.DRILL_TIMER) is False


def test_credential_path_reads_credentials_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    assert systemd.credential_path("mysql-password") is None
    (tmp_path / "mysql-password").write_text("pw")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert systemd.credential_path("mysql-password") == str(tmp_path / "mysql-password")
    assert systemd.credential_path("other") is None


def test_notify_sends_status_datagram_to_notify_socket(tmp_path, monkeypatch):
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        assert systemd.notify(STATUS="sqlite: 41% of 7.9 GB") is True
        assert server.recv(4096) == b"STATUS=sqlite: 41% of 7.9 GB"
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert systemd.notify(STATUS="x") is False


def test_journal_send_uses_native_protocol_with_multiline_fields(tmp_path, monkeypatch):
    path = str(tmp_path / "journal")
    monkeypatch.setattr(systemd, "JOURNAL_SOCKET", path)
    assert systemd.journal_send("x", identifier="t") is False  # nobody listening
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        assert systemd.journal_send("two\nlines", priority=3, identifier="gen", snapshot="S1")
        data = server.recv(65536)
    assert data.startswith(b"MESSAGE\n" + (9).to_bytes(8, "little") + b"two\nlines\n")
    assert b"PRIORITY=3\n" in data and b"SYSLOG_IDENTIFIER=gen\n" in data and b"SNAPSHOT=S1\n" in data


def test_calendar_elapses_are_utc_seconds_in_order():
    times = systemd.calendar_elapses("*-*-* 00/6:00:00", iterations=3)
    assert len(times) == 3
    assert [b - a for a, b in zip(times, times[1:], strict=False)] == [21600, 21600]
    assert all(t % 3600 == 0 for t in times)
    assert systemd.calendar_elapses("not a calendar") == []
