"""`tracker-backup enable|disable|apply-schedule`: the [schedule] enabled switch, applied at once.

`enable`/`disable` rewrite only the `enabled` line of the config file's
[schedule] section (comments, order and every other line are kept), then apply
the config through D-Bus: daemon-reload (the generator rewrites the drop-ins and
the timers.target.wants links) and start or stop the timers. `apply-schedule`
does the second half alone; tracker-backup-schedule.path runs it after a
`systemctl daemon-reload` that found the enabled setting changed, so editing the
file and reloading is enough.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

from tracker_backup import generator, systemd
from tracker_backup.config import Config, load_config
from tracker_backup.errors import EXIT_OK, EXIT_RUN_FAILED

_SECTION = re.compile(r"^\s*\[([^\]]*)\]")
_ENABLED = re.compile(r"^(?P<key>\s*enabled\s*[=:]\s*)(?P<value>[^;\n]*?)(?P<rest>\s*(;.*)?)$", re.I)


def register(subparsers) -> None:
    """Add the `enable`, `disable` and `apply-schedule` subcommands."""
    en = subparsers.add_parser("enable", help="set [schedule] enabled = yes and start the timer now")
    en.set_defaults(handler=lambda args, config, out: set_enabled(config, True, out))
    dis = subparsers.add_parser("disable",
                                help="set [schedule] enabled = no and stop the timer now "
                                     "(manual runs still work)")
    dis.set_defaults(handler=lambda args, config, out: set_enabled(config, False, out))
    ap = subparsers.add_parser("apply-schedule",
                               help="apply the config's [schedule] to systemd now "
                                    "(daemon-reload, start/stop the timers)")
    ap.set_defaults(handler=_apply_handler)


def _apply_handler(args: argparse.Namespace, config: Config, out) -> int:
    return apply_until_stable(config, out)


def _stamp(path: Path) -> tuple | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def apply_until_stable(config: Config, out, rounds: int = 5) -> int:
    """apply(), again while the file keeps changing under us.

    A path unit does not re-trigger for a change made while its service runs, so
    an edit made during an apply must be picked up here or it would be lost.
    """
    path = Path(config.file)
    for _ in range(rounds):
        before = _stamp(path)
        config = load_config(path)  # read after the stamp: a later edit shows as a new stamp
        code = apply(config, out)
        if code != EXIT_OK or _stamp(path) == before:
            return code
    return code


def rewrite_enabled(text: str, enabled: bool) -> str:
    """Config text with [schedule] enabled set; everything else unchanged."""
    value = "yes" if enabled else "no"
    lines = text.splitlines(keepends=True)
    section = None
    header_at = None
    for i, line in enumerate(lines):
        m = _SECTION.match(line)
        if m:
            section = m.group(1).strip()
            if section == "schedule" and header_at is None:
                header_at = i
            continue
        if section != "schedule" or line.lstrip().startswith(("#", ";")):
            continue
        m = _ENABLED.match(line.rstrip("\r\n"))
        if m:
            ending = line[len(line.rstrip("\r\n")):]
            lines[i] = f"{m.group('key')}{value}{m.group('rest')}{ending or os.linesep}"
            return "".join(lines)
    if header_at is not None:
        lines.insert(header_at + 1, f"enabled = {value}\n")
        return "".join(lines)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    return "".join(lines) + f"\n[schedule]\nenabled = {value}\n"


def write_config_text(path: Path, text: str) -> None:
    """Replace the config file atomically, keeping its owner and mode."""
    st = path.stat()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fchmod(fh.fileno(), st.st_mode & 0o7777)
            os.fchown(fh.fileno(), st.st_uid, st.st_gid)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def set_enabled(config: Config, enabled: bool, out) -> int:
    """Write [schedule] enabled into the config file, then apply it through D-Bus."""
    path = Path(config.file)
    text = path.read_text(encoding="utf-8")
    new_text = rewrite_enabled(text, enabled)
    if new_text != text:
        write_config_text(path, new_text)
    new_config = load_config(path)  # proves the edit left a valid file
    word = "yes" if enabled else "no"
    print(f"{path}: [schedule] enabled = {word}", file=out)
    return apply(new_config, out)


def _settled_state(timer: str, enabled: bool, wait: float = 5.0) -> dict:
    """The timer's state once the start/stop job has run (jobs are asynchronous)."""
    deadline = time.monotonic() + wait
    while True:
        state = systemd.timer_state(timer)
        if (state["active_state"] == "active") == enabled or time.monotonic() > deadline:
            return state
        time.sleep(0.1)


def apply(config: Config, out) -> int:
    """daemon-reload, then start or stop the timers as [schedule] enabled says."""
    if not systemd.booted():
        print("systemd is not running here: the setting applies when the host boots with systemd",
              file=out)
        return EXIT_OK
    try:
        # Recorded first: the generator run by this reload then sees nothing pending.
        generator.write_applied_record(config.schedule.enabled,
                                       archive=generator.plan_for(config).archive)
        systemd.daemon_reload()
        timers = [systemd.TIMER]
        if systemd.unit_file_exists(systemd.DRILL_TIMER):
            timers.append(systemd.DRILL_TIMER)
        for timer in timers:
            if config.schedule.enabled:
                systemd.start_unit(timer)
            else:
                systemd.stop_unit(timer)
        state = _settled_state(systemd.TIMER, config.schedule.enabled)
        archive_line = _apply_archive(config)
    except (systemd.SystemdUnavailable, OSError) as exc:
        print(f"tracker-backup: error: could not apply the schedule through systemd: {exc}",
              file=sys.stderr)
        return EXIT_RUN_FAILED
    line = f"{systemd.TIMER}: {state['active_state']} ({state['sub_state']})"
    if config.schedule.enabled:
        line += f", schedule {config.schedule.on_calendar}"
    print(line, file=out)
    if archive_line:
        print(archive_line, file=out)
    return EXIT_OK


def _apply_archive(config: Config) -> str | None:
    """Start or stop tracker-backup-archive.service as the generator's plan wants it."""
    if not systemd.unit_file_exists(generator.ARCHIVE_UNIT):
        return None
    wanted = generator.plan_for(config).archive
    if wanted:
        systemd.start_unit(generator.ARCHIVE_UNIT)
    else:
        systemd.stop_unit(generator.ARCHIVE_UNIT)
    return f"{generator.ARCHIVE_UNIT}: {'started' if wanted else 'stopped'}"
