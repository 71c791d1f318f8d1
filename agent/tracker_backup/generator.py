"""systemd generator: turns the config file into drop-ins for the units.

Installed as /usr/lib/systemd/system-generators/tracker-backup-generator; systemd
runs it at boot and on every `systemctl daemon-reload` with three output
directories (normal, early, late). It writes into the normal one:

- tracker-backup.timer.d/  OnCalendar= and RandomizedDelaySec= from [schedule];
- tracker-backup-drill.timer.d/  OnCalendar= from [schedule] drill_on_calendar;
- timers.target.wants/ links: the timers are enabled only when [schedule] enabled = yes;
- tracker-backup.service.d/  ReadWritePaths= for the backup path and the SQLite
  database directory, the MySQL credential, and the network the config needs;
- tracker-backup-drill.service.d/  the same, with only the backup path writable;
  both also get the directory of [metrics] textfile (created if missing, 0755);
- tracker-backup-schedule.pending, when [schedule] enabled differs from the setting
  last applied (/run/tracker-backup/schedule-applied): tracker-backup-schedule.path
  then starts or stops the running timers, which a reload alone never does.

It never fails at boot: on a broken or missing config it logs the error (the
journal shows it under tracker-backup-generator) and writes the packaged
defaults, so the timer still fires and the service then fails loudly with the
same config error, where the operator looks.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tracker_backup import engines, systemd
from tracker_backup.config import DEFAULT_CONFIG_PATH, BackupConfig, Config, ScheduleConfig, load_config
from tracker_backup.engines.contract import HOME_DIRS
from tracker_backup.errors import ConfigError

NAME = "tracker-backup-generator"
UNIT_DIRS = ("/usr/lib/systemd/system", "/lib/systemd/system", "/etc/systemd/system")
DROPIN = "50-tracker-backup-config.conf"
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}
APPLIED_RECORD = Path(os.environ.get("TRACKER_BACKUP_SCHEDULE_RECORD",
                                     "/run/tracker-backup/schedule-applied"))
PENDING_FLAG = "tracker-backup-schedule.pending"
ARCHIVE_UNIT = "tracker-backup-archive.service"


def record_text(enabled: bool, archive: bool = False) -> str:
    return f"enabled={'yes' if enabled else 'no'}\n" + ("archive=yes\n" if archive else "")


def write_applied_record(enabled: bool, record: Path = APPLIED_RECORD, archive: bool = False) -> None:
    """Note which [schedule] enabled (and archive unit state) the running units now follow."""
    record.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    tmp = record.with_name(record.name + ".tmp")
    tmp.write_text(record_text(enabled, archive))
    os.replace(tmp, record)


def apply_needed(enabled: bool, record: Path = APPLIED_RECORD, archive: bool = False) -> bool:
    """True when the running timers may not follow `enabled` (the record says otherwise).

    No record means this is the boot (or the first run after install): the wants
    links written now are what the timers follow, so the record is created here.
    """
    try:
        return record.read_text() != record_text(enabled, archive)
    except FileNotFoundError:
        # A read-only /run: nothing to compare with later, and nothing to do now.
        with contextlib.suppress(OSError):
            write_applied_record(enabled, record, archive)
        return False
    except OSError:
        return False


@dataclass
class Plan:
    """What the generator will write; built from a Config, or the defaults on error."""

    schedule: ScheduleConfig
    read_write: list[Path] = field(default_factory=list)
    make_dirs: list[Path] = field(default_factory=list)
    credentials: dict[str, Path] = field(default_factory=dict)  # LoadCredential= name → file
    home_read: list[Path] = field(default_factory=list)  # BindReadOnlyPaths= into ProtectHome=tmpfs
    service_lines: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    metrics_dir: Path | None = None  # the directory of [metrics] textfile
    metrics_listen: str | None = None  # [metrics] listen: the archiver serves /metrics there
    # tracker-backup-archive.service is wanted: a source has continuous archiving on
    # ([sqlite] continuous = yes) and [schedule] enabled = yes (`disable` pauses both).
    archive: bool = False

    @property
    def credential(self) -> Path | None:
        """The first credential's file (the MySQL password), if any."""
        return next(iter(self.credentials.values()), None)


def quote(value: object) -> str:
    """Quote one word for a unit file: specifiers (%) and C escapes neutralised."""
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'"{text}"'


def seconds(value: float) -> str:
    return f"{int(value)}s" if float(value).is_integer() else f"{int(value * 1000)}ms"


def plan_for(config: Config) -> Plan:
    """The drop-in contents a valid configuration asks for (each engine says what it needs)."""
    plan = Plan(schedule=config.schedule)
    backup = config.backup.path
    plan.read_write.append(backup)
    if not config.backup.require_mountpoint:
        plan.make_dirs.append(backup)  # else the agent must find it mounted, not create it
    touched = [backup]
    hosts: list[str] = []
    for engine in engines.configured(config):
        needs = engine.sandbox(config)
        plan.read_write += needs.read_write
        touched += needs.read_write + needs.read
        plan.credentials.update(needs.credentials)
        plan.home_read += needs.home_read
        hosts += needs.network_hosts
    for host in hosts:
        plan.service_lines += network_lines(host)
    if not hosts:
        # Nothing needs the network: sockets in the file system (MySQL, Docker) still work.
        plan.service_lines.append("PrivateNetwork=yes")
    if config.metrics.textfile is not None:
        plan.metrics_dir = config.metrics.textfile.parent
        touched.append(plan.metrics_dir)
    plan.metrics_listen = config.metrics.listen
    if any(_under(p, d) for p in touched for d in HOME_DIRS):
        plan.service_lines.append("ProtectHome=read-only")
    elif plan.home_read:
        # Only these, read-only: /home, /root and /run/user stay hidden otherwise.
        plan.service_lines.append("ProtectHome=tmpfs")
        plan.service_lines += [f"BindReadOnlyPaths={quote(f'-{p}')}" for p in plan.home_read]
    plan.archive = config.schedule.enabled and any(
        e.archiver(config) is not None for e in engines.configured(config))
    return plan


def network_lines(host: str) -> list[str]:
    """IP allow-list lines for a MySQL server reached over TCP."""
    if host.lower() in LOOPBACK_NAMES:
        return []  # the unit already allows localhost
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        # A name: its addresses may change and are unknown at boot, so lift the IP allow-list.
        return [f"# [mysql] host = {host} is a name: IP allow-list lifted", "IPAddressDeny="]
    return [f"IPAddressAllow={address}"]


def fallback_plan() -> Plan:
    """The packaged defaults, used when the config cannot be read."""
    plan = Plan(schedule=ScheduleConfig())
    plan.read_write.append(BackupConfig().path)
    plan.notes.append("configuration invalid or missing: packaged defaults used; "
                      "`tracker-backup check-config` shows the error")
    return plan


def _under(path: Path, directory: str) -> bool:
    return str(path) == directory or str(path).startswith(directory.rstrip("/") + "/")


def find_unit(name: str) -> str | None:
    for directory in UNIT_DIRS:
        if os.path.exists(os.path.join(directory, name)):
            return os.path.join(directory, name)
    return None


def write_plan(plan: Plan, out: Path, record: Path = APPLIED_RECORD) -> list[Path]:
    """Write the drop-ins and wants links for `plan` under `out`; return what was written."""
    header = ["# Generated by tracker-backup-generator from the configuration file.",
              "# Edit /etc/tracker-backup/tracker-backup.conf, then: systemctl daemon-reload",
              *(f"# {note}" for note in plan.notes)]
    written = []
    s = plan.schedule
    timer = [*header, "[Timer]", "OnCalendar=", f"OnCalendar={s.on_calendar}",
             f"RandomizedDelaySec={seconds(s.randomized_delay)}"]
    written.append(_write(out / "tracker-backup.timer.d" / DROPIN, timer))
    drill = [*header, "[Timer]", "OnCalendar=", f"OnCalendar={s.drill_on_calendar}"]
    written.append(_write(out / "tracker-backup-drill.timer.d" / DROPIN, drill))

    written.append(_write(out / "tracker-backup.service.d" / DROPIN,
                          [*header, *service_section(plan, plan.read_write)]))
    # The restore drill writes only its scratch space inside the backup path.
    written.append(_write(out / "tracker-backup-drill.service.d" / DROPIN,
                          [*header, *service_section(plan, plan.read_write[:1])]))

    written.append(_write(out / f"{ARCHIVE_UNIT}.d" / DROPIN,
                          [*header, *archive_network(plan, service_section(plan, plan.read_write))]))
    if plan.archive and (target := find_unit(ARCHIVE_UNIT)) is not None:
        link = out / "multi-user.target.wants" / ARCHIVE_UNIT
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink():
            link.unlink()
        link.symlink_to(target)
        written.append(link)
    if s.enabled:
        for unit in ("tracker-backup.timer", "tracker-backup-drill.timer"):
            target = find_unit(unit)
            if target is None:
                continue
            link = out / "timers.target.wants" / unit
            link.parent.mkdir(parents=True, exist_ok=True)
            if link.is_symlink():
                link.unlink()
            link.symlink_to(target)
            written.append(link)
    if apply_needed(s.enabled, record, plan.archive):
        written.append(_write(out / PENDING_FLAG, [f"enabled={'yes' if s.enabled else 'no'}"]))
    return written


def service_section(plan: Plan, read_write: list[Path]) -> list[str]:
    """[Service] lines: the writable paths, the MySQL credential, the network."""
    lines = ["[Service]"]
    for path in plan.make_dirs:
        # '+': outside the sandbox, so the path exists before ReadWritePaths= needs it.
        lines.append(f"ExecStartPre=-+/bin/mkdir -p -m 0700 {quote(path)}")
    if plan.metrics_dir is not None:
        # node_exporter's own user reads it: 0755 with its parents (install -d), and an
        # existing directory is left as it is (the operator's mode and owner).
        lines.append("ExecStartPre=-+/bin/sh -c 'test -d \"$$0\" || exec /usr/bin/install -d "
                     f"-m 0755 \"$$0\"' {quote(plan.metrics_dir)}")
        read_write = [*read_write, plan.metrics_dir]
    for path in read_write:
        # '-': a missing path must not stop the sandbox from being set up; the agent
        # then reports the missing directory itself, naming the config key.
        lines.append(f"ReadWritePaths={quote(f'-{path}')}")
    for name, path in plan.credentials.items():
        lines.append(f"LoadCredential={name}:{str(path).replace('%', '%%')}")
    return lines + plan.service_lines


def archive_network(plan: Plan, lines: list[str]) -> list[str]:
    """The archiver serving /metrics on the host's loopback needs the host's network.

    PrivateNetwork= would give it a loopback of its own that no scraper reaches; instead
    the IP allow-list keeps it to localhost. When an engine already needs the network
    (MySQL over TCP) its lines stay, and they allow localhost already.
    """
    if plan.metrics_listen is None or "PrivateNetwork=yes" not in lines:
        return lines
    return [*(ln for ln in lines if ln != "PrivateNetwork=yes"),
            f"# [metrics] listen = {plan.metrics_listen}: /metrics on the loopback only",
            "IPAddressDeny=any", "IPAddressAllow=localhost"]


def _write(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def log(message: str, priority: int = 3) -> None:
    """To the journal when it runs (daemon-reload), else kmsg (early boot), else stderr.

    SYSTEMD_LOG_TARGET=console (systemd's own convention) sends it to stderr only.
    """
    if os.environ.get("SYSTEMD_LOG_TARGET") != "console":
        if systemd.journal_send(message, priority=priority, identifier=NAME):
            return
        with contextlib.suppress(OSError), open("/dev/kmsg", "w") as kmsg:
            kmsg.write(f"<{priority}>{NAME}: {message}\n")
            return
    sys.stderr.write(f"{NAME}: {message}\n")
    sys.stderr.flush()


def main(argv: list[str] | None = None) -> int:
    """Entry point: `tracker-backup-generator NORMAL_DIR [EARLY_DIR LATE_DIR]`. Always exits 0."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        log("usage: tracker-backup-generator NORMAL_DIR [EARLY_DIR LATE_DIR]")
        return 0
    out = Path(argv[0])
    config_path = Path(os.environ.get("TRACKER_BACKUP_CONFIG") or DEFAULT_CONFIG_PATH)
    try:
        plan = plan_for(load_config(config_path))
    except ConfigError as exc:
        log(f"{exc}; falling back to the packaged defaults (schedule daily, timer enabled)")
        plan = fallback_plan()
    except Exception as exc:  # noqa: BLE001 - a generator must never break the boot
        log(f"unexpected {type(exc).__name__}: {exc}; falling back to the defaults")
        plan = fallback_plan()
    try:
        write_plan(plan, out)
    except Exception as exc:  # noqa: BLE001 - same: log, leave the static units as they are
        log(f"could not write drop-ins to {out}: {exc}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
