"""The only module that knows about systemd: sd_notify, the journal, detection.

Everything degrades to a no-op when not under systemd (tests, manual runs on
a host without systemd), so the core runs the same everywhere.
"""

from __future__ import annotations

import logging
import os
import socket
import sys

JOURNAL_SOCKET = "/run/systemd/journal/socket"

# Fixed MESSAGE_IDs, one per event kind: `journalctl MESSAGE_ID=...` finds them.
MESSAGE_IDS = {
    "run-succeeded": "55506b853c954e68805ed2e73e4a44d1",
    "run-failed": "7771ba38877c4fafaf5c9c78b0a5eb3f",
    "config-error": "4e410fde7d5e45fbb625ce4dade0bf99",
    "pruned": "5f06ddc0540e4a1c9141c437939d24e6",
    "verify-succeeded": "a847842d004b4be9b22e2528d80fdfe1",
    "verify-failed": "fb0417ce33674aba9a6bf5de37328f90",
    "lock-held": "016335043dd64edab6159e2d5fa98119",
    "drill-succeeded": "a5a6e339a69b4c4e852dd7f8aaa0a65c",
    "drill-failed": "a094a059ddf9498bb7b832b6814d2190",
    "restored": "f3671837556b4a818e0a861a21780897",
}


def stderr_is_journal() -> bool:
    """True when our stderr is connected to journald (systemd sets JOURNAL_STREAM)."""
    value = os.environ.get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(x) for x in value.split(":"))
        st = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def notify(**fields: str) -> bool:
    """Send sd_notify fields (STATUS=..., READY=1); no-op without NOTIFY_SOCKET."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    payload = "\n".join(f"{k}={v}" for k, v in fields.items()).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(payload, address)
        return True
    except OSError:
        return False


def _encode_field(key: str, value: object) -> bytes:
    data = str(value).encode("utf-8", "replace")
    if b"\n" in data:
        return key.encode() + b"\n" + len(data).to_bytes(8, "little") + data + b"\n"
    return key.encode() + b"=" + data + b"\n"


_LEVEL_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4,
                   logging.ERROR: 3, logging.CRITICAL: 2}


class JournalHandler(logging.Handler):
    """Writes records to journald's native socket, with structured fields.

    Extra fields come from `record.journal` (a dict of UPPERCASE keys), set by
    tracker_backup.logs.event().
    """

    def __init__(self, identifier: str = "tracker-backup"):
        super().__init__()
        self.identifier = identifier
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = {
                "MESSAGE": self.format(record),
                "PRIORITY": _LEVEL_PRIORITY.get(record.levelno, 6),
                "SYSLOG_IDENTIFIER": self.identifier,
                "CODE_FILE": record.pathname,
                "CODE_LINE": record.lineno,
                "CODE_FUNC": record.funcName,
                "LOGGER": record.name,
            }
            fields.update(getattr(record, "journal", {}) or {})
            payload = b"".join(_encode_field(k, v) for k, v in fields.items())
            self.sock.sendto(payload, JOURNAL_SOCKET)
        except OSError:
            # The journal is gone (shutdown): fall back to stderr, which systemd also reads.
            sys.stderr.write(self.format(record) + "\n")
        except Exception:  # noqa: BLE001 - logging must never crash the backup
            self.handleError(record)

    def close(self) -> None:
        self.sock.close()
        super().close()
