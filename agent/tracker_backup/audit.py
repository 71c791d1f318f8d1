"""The audit trail of restores and drills: who restored what, where, and how it ended.

One journal entry per restore or drill, sent straight to journald's socket (not through
the logging handlers), so it is there whether the command runs in a unit (stderr is the
journal) or from a shell (stderr is a terminal, a pipe, or /dev/null). Find them with

    journalctl SYSLOG_IDENTIFIER=tracker-backup TRACKER_BACKUP_EVENT=audit
"""

from __future__ import annotations

import logging
import os
import pwd

from tracker_backup import systemd

log = logging.getLogger(__name__)
EVENT = "audit"


def who() -> dict[str, str]:
    """The real user running the command, and the sudo caller if there is one."""
    uid = os.getuid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    fields = {"AUDIT_UID": str(uid), "AUDIT_USER": user}
    sudo_user = os.environ.get("SUDO_USER")
    if sudo_user:
        fields["SUDO_USER"] = sudo_user
    return fields


def record(action: str, *, snapshot: str | None, kinds: list[str] | tuple[str, ...],
           target: str | None, result: str, error: str | None = None) -> bool:
    """Send one audit entry (action restore|drill, result ok|failed); False without journald."""
    fields = who()
    caller = fields["AUDIT_USER"] + (f" (sudo by {fields['SUDO_USER']})"
                                     if "SUDO_USER" in fields else "")
    what = ",".join(kinds) or "all"
    message = (f"audit: {action} of snapshot {snapshot or '?'} ({what})"
               + (f" to {target}" if target else "") + f" by {caller}: {result}"
               + (f": {error}" if error else ""))
    entry = {"TRACKER_BACKUP_EVENT": EVENT, "MESSAGE_ID": systemd.MESSAGE_IDS[EVENT],
             "AUDIT_ACTION": action, "SNAPSHOT": snapshot or "", "KINDS": what,
             "TARGET": target or "", "RESULT": result, **fields}
    if error:
        entry["ERROR"] = error
    sent = systemd.journal_send(message, priority=5 if result == "ok" else 3, **entry)
    if not sent:
        log.debug("no journal to record the audit entry in: %s", message)
    return sent
