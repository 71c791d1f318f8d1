"""The only module that knows about systemd: sd_notify, the journal, detection,
the service manager over D-Bus (pystemd), credentials and calendar expressions.

Everything degrades to a no-op when not under systemd (tests, manual runs on
a host without systemd), so the core runs the same everywhere.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import sys

from tracker_backup import procs

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
    "audit": "d088a8ae407f4932b353fad41f216cb2",  # a restore or drill: who, what, where, result
}


def stderr_is_journal() -> bool:
    """True when our stderr is connected to journald (systemd sets JOURNAL_STREAM)."""
    return _is_journal_stream(sys.stderr)


def stdout_is_journal() -> bool:
    """True when our stdout is connected to journald (a unit's default StandardOutput=)."""
    return _is_journal_stream(sys.stdout)


def _is_journal_stream(stream) -> bool:
    value = os.environ.get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(x) for x in value.split(":"))
        st = os.fstat(stream.fileno())
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
    return _send_datagram(payload, address)


def _send_datagram(payload: bytes, address: str) -> bool:
    """One datagram to a Unix socket (notify, journal); False if nobody listens."""
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


# --- The units, the service manager (pystemd over D-Bus), credentials, calendars ---------

SERVICE = "tracker-backup.service"
TIMER = "tracker-backup.timer"
DRILL_TIMER = "tracker-backup-drill.timer"
CREDENTIAL_MYSQL_PASSWORD = "mysql-password"


class SystemdUnavailable(RuntimeError):
    """The service manager cannot be reached (not booted with systemd, no D-Bus, no pystemd)."""


def credential_path(name: str) -> str | None:
    """Path of a LoadCredential= credential given to this service, if systemd passed it."""
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return None
    path = os.path.join(directory, name)
    return path if os.path.isfile(path) else None


def booted() -> bool:
    """True when the host runs systemd as its init (sd_booted())."""
    return os.path.isdir("/run/systemd/system")


def _pystemd():
    if not booted():
        raise SystemdUnavailable("systemd is not running on this host (no /run/systemd/system)")
    try:
        import pystemd.systemd1 as systemd1
    except ImportError as exc:  # python3-pystemd is a dependency of the package
        raise SystemdUnavailable(f"python3-pystemd is not installed ({exc})") from None
    return systemd1


def _call(what: str, fn):
    """Run one D-Bus call, turning pystemd's errors into SystemdUnavailable with context."""
    try:
        return fn()
    except SystemdUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - pystemd raises many DBus*Error types
        raise SystemdUnavailable(f"{what}: {type(exc).__name__}: {exc}") from None


def daemon_reload() -> None:
    """`systemctl daemon-reload`: re-run the generator so config changes take effect."""
    systemd1 = _pystemd()

    def reload():
        with systemd1.Manager() as manager:
            manager.Manager.Reload()
    _call("daemon-reload", reload)


def _unit_job(verb: str, name: str) -> None:
    """Queue a start/stop job for a unit (job mode "replace"), without waiting for it."""
    systemd1 = _pystemd()

    def job():
        with systemd1.Manager() as manager:
            method = manager.Manager.StartUnit if verb == "start" else manager.Manager.StopUnit
            method(name.encode(), b"replace")
    _call(f"{verb} {name}", job)


def start_unit(name: str) -> None:
    """Start a unit, like `systemctl start --no-block`."""
    _unit_job("start", name)


def stop_unit(name: str) -> None:
    """Stop a unit, like `systemctl stop --no-block`."""
    _unit_job("stop", name)


def unit_file_exists(name: str) -> bool:
    """True if the service manager knows a unit file for `name` (installed, not masked)."""
    def state():
        with _pystemd().Manager() as manager:
            return manager.Manager.GetUnitFileState(name.encode())
    try:
        value = _call(f"unit file state of {name}", state)
    except SystemdUnavailable:
        return False
    return (value.decode() if isinstance(value, bytes) else str(value)) not in ("masked", "bad")


USEC_INFINITY = 2**64 - 1  # systemd's "never" (USEC_INFINITY), e.g. an inactive timer's next elapse


def usec_to_seconds(usec: int) -> float | None:
    """A systemd timestamp (µs since the epoch) as POSIX seconds; None for 0 and "never"."""
    if not usec or usec >= USEC_INFINITY:
        return None
    return usec / 1e6


def timer_state(name: str = TIMER) -> dict:
    """ActiveState/SubState, next and last elapse of a timer, read over D-Bus.

    Times are POSIX seconds (None when systemd reports none, or "never": an inactive
    timer's next elapse is UINT64_MAX).
    """
    systemd1 = _pystemd()

    def read():
        with systemd1.Unit(name.encode()) as unit:
            active = unit.Unit.ActiveState
            sub = unit.Unit.SubState
            load = unit.Unit.LoadState
            next_us = last_us = 0
            if load == b"loaded":
                next_us = unit.Timer.NextElapseUSecRealtime
                last_us = unit.Timer.LastTriggerUSec
            return load, active, sub, next_us, last_us
    load, active, sub, next_us, last_us = _call(f"state of {name}", read)

    def text(v):
        return v.decode() if isinstance(v, bytes) else str(v)
    return {
        "load_state": text(load),
        "active_state": text(active),
        "sub_state": text(sub),
        "next_elapse": usec_to_seconds(next_us),
        "last_trigger": usec_to_seconds(last_us),
    }


_CAL_TIME = re.compile(r"(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})")


def analyze_calendar(expression: str, iterations: int = 1) -> tuple[int, str] | None:
    """`systemd-analyze calendar` on an expression: (status, output), None if not installed."""
    import shutil

    tool = shutil.which("systemd-analyze")
    if tool is None:
        return None
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TZ": "UTC", "LC_ALL": "C"}
    return procs.run_tool([tool, "calendar", f"--iterations={iterations}", expression], env=env)


def calendar_elapses(expression: str, iterations: int = 2) -> list[float]:
    """The next `iterations` elapse times of an OnCalendar= expression (POSIX seconds, UTC).

    Asks `systemd-analyze calendar`, the authority on the syntax; [] when it is
    missing or rejects the expression.
    """
    import calendar as _cal
    import time as _time

    answer = analyze_calendar(expression, iterations)
    if answer is None or answer[0] != 0:
        return []
    times = []
    for line in answer[1].splitlines():
        label = line.split(":", 1)[0].strip()
        # "Iter. #2" up to systemd 256 (Debian 12), "Iteration #2" from 257 (Debian 13).
        if label in ("Next elapse", "(in UTC)") or label.startswith("Iter"):
            m = _CAL_TIME.search(line)
            if m:
                stamp = _cal.timegm(_time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S"))
                if not times or times[-1] != stamp:
                    times.append(float(stamp))
    return times


def journal_send(message: str, *, priority: int = 6, identifier: str = "tracker-backup",
                 **fields: object) -> bool:
    """Send one entry to journald's native socket; False when journald is not there.

    For code not run as a unit's main process (the generator), whose stderr is
    not connected to the journal.
    """
    entry = {"MESSAGE": message, "PRIORITY": priority, "SYSLOG_IDENTIFIER": identifier}
    entry.update({k.upper(): v for k, v in fields.items()})
    payload = b"".join(_encode_field(k, v) for k, v in entry.items())
    return _send_datagram(payload, JOURNAL_SOCKET)
