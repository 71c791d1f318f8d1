"""Restores and drills leave an audit entry in the journal, whatever stderr is (item 8).

journald is replaced by a datagram socket of the test's own (the journal's native
protocol, tracker_backup.systemd.JOURNAL_SOCKET pointed at it): the agent's real
journal client writes there.
"""

from __future__ import annotations

import os
import pwd
import signal
import socket
import sys

import pytest

from tracker_backup import cli as tb_cli
from tracker_backup import systemd


def parse_entry(data: bytes) -> dict[str, str]:
    """One native-protocol datagram: KEY=value lines, or KEY\\n<le64 size><bytes>\\n."""
    fields, i = {}, 0
    while i < len(data):
        nl = data.index(b"\n", i)
        line = data[i:nl]
        if b"=" in line:
            key, value = line.split(b"=", 1)
            i = nl + 1
        else:
            key, size = line, int.from_bytes(data[nl + 1:nl + 9], "little")
            value = data[nl + 9:nl + 9 + size]
            i = nl + 9 + size + 1
        fields[key.decode()] = value.decode()
    return fields


@pytest.fixture
def journal(tmp_path, monkeypatch):
    """The fake journal; the agent runs in this process, so what main() changes
    process-wide (umask, SIGTERM handler, unraisablehook) is put back afterwards."""
    umask = os.umask(0o022)
    os.umask(umask)
    monkeypatch.setattr(signal, "signal", lambda *a: None)
    monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)
    path = tmp_path / "journal.socket"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    monkeypatch.setattr(systemd, "JOURNAL_SOCKET", str(path))

    def entries() -> list[dict[str, str]]:
        got = []
        while True:
            try:
                got.append(parse_entry(sock.recv(1 << 20)))
            except BlockingIOError:
                return got
    yield entries
    sock.close()
    os.umask(umask)


def audits(entries: list[dict[str, str]]) -> list[dict[str, str]]:
    return [e for e in entries if e.get("TRACKER_BACKUP_EVENT") == "audit"]


def test_restore_from_a_shell_records_who_what_where_and_the_result(
        cli, config_file, tmp_path, journal, monkeypatch):
    snap_id = cli("run", check=True).stdout.strip()
    monkeypatch.setenv("SUDO_USER", "alice")
    target = tmp_path / "restored"
    rc = tb_cli.main(["--config", str(config_file), "restore", "--kind", "files",
                      "--to", str(target)])
    assert rc == 0
    entry, = audits(journal())
    me = pwd.getpwuid(os.getuid()).pw_name
    assert entry["AUDIT_ACTION"] == "restore" and entry["RESULT"] == "ok"
    assert entry["SNAPSHOT"] == snap_id and entry["KINDS"] == "files"
    assert entry["TARGET"] == str(target)
    assert (entry["AUDIT_UID"], entry["AUDIT_USER"], entry["SUDO_USER"]) == (
        str(os.getuid()), me, "alice")
    assert "alice" in entry["MESSAGE"] and snap_id in entry["MESSAGE"]


def test_a_refused_restore_and_a_drill_are_recorded_too(cli, config_file, storage, journal):
    snap_id = cli("run", check=True).stdout.strip()
    (storage / "tracker/etc/tracker.toml").write_text("changed\n")
    refused = tb_cli.main(["--config", str(config_file), "restore", "--kind", "files"])
    assert refused != 0  # differs: needs --force
    assert tb_cli.main(["--config", str(config_file), "drill"]) == 0
    entries = audits(journal())
    assert [(e["AUDIT_ACTION"], e["RESULT"]) for e in entries] == [
        ("restore", "failed"), ("drill", "ok")], entries
    assert entries[0]["TARGET"] == str(storage) and "--force" in entries[0]["ERROR"]
    assert all(e["SNAPSHOT"] == snap_id for e in entries)
