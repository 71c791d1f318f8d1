"""Modification times to the nanosecond in the archive (docs/format.md, files.tar).

Python's tarfile writes a float mtime into the pax header (about 0.1 µs precision), and
GNU tar compares nanoseconds: `tar -d` then reports "Mod time differs" for every file,
even unchanged ones. The exact value, written from st_mtime_ns, keeps `tar -d` quiet and
gives restored files their exact mtime back.
"""

from __future__ import annotations

import tarfile

NS = 1_000_000_000


def set_exact_mtime(info: tarfile.TarInfo, mtime_ns: int) -> tarfile.TarInfo:
    """Whole seconds in the ustar header, SECONDS.NNNNNNNNN in a pax mtime record."""
    if mtime_ns >= 0:  # tarfile rewrites a negative mtime itself (pax, as an integer)
        seconds, fraction = divmod(mtime_ns, NS)
        info.mtime = seconds
        info.pax_headers = {**info.pax_headers, "mtime": f"{seconds}.{fraction:09d}"}
    return info


def mtime_ns_of(member: tarfile.TarInfo) -> int:
    """A member's mtime in nanoseconds, exact when its pax record is (tarfile parses a float)."""
    text = member.pax_headers.get("mtime")
    if text:
        whole, _, fraction = text.partition(".")
        if whole.lstrip("-").isdigit() and (not fraction or fraction.isdigit()):
            ns = int(whole.lstrip("-")) * NS + int((fraction + "0" * 9)[:9] or 0)
            return -ns if whole.startswith("-") else ns
    return round(member.mtime * NS)
