"""The archive runner under a real notify socket: READY, WATCHDOG, STATUS, STOPPING, SIGTERM."""

from __future__ import annotations

import contextlib
import socket
import time

from support.agent_env import agent_env
from support.archive_kit import ArchiverProc
from support.tracker_db import create_tracker_db


def test_runner_notifies_ready_watchdog_status_and_stops_on_sigterm(tmp_path):
    db = create_tracker_db(tmp_path / "t.db", rows=500)
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.2)
    env = agent_env(NOTIFY_SOCKET=str(sock_path), WATCHDOG_USEC="400000")
    arch = ArchiverProc(db, tmp_path / "backup", tmp_path / "a.log", env=env)
    messages: list[str] = []
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline and sum("WATCHDOG=1" in m for m in messages) < 3:
            with contextlib.suppress(TimeoutError):
                messages.append(sock.recv(4096).decode())
        assert arch.stop() == 0
        while True:
            try:
                messages.append(sock.recv(4096).decode())
            except TimeoutError:
                break
    finally:
        arch.kill()
        sock.close()
    joined = "\n".join(messages)
    assert "READY=1" in joined and "STOPPING=1" in joined
    assert sum("WATCHDOG=1" in m for m in messages) >= 3
    assert "STATUS=sqlite: seq" in joined
    ready = next(i for i, m in enumerate(messages) if "READY=1" in m)
    assert not any("WATCHDOG=1" in m for m in messages[:ready]), "watchdog before READY"
