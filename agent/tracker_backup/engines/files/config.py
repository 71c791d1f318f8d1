"""[files]: chosen files of the storage directory (typed section and its parser)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tracker_backup.config import Section


@dataclass(frozen=True)
class FilesConfig:
    """[files]: chosen files of the storage directory, as one tar archive."""

    root: Path
    include: tuple[str, ...] = ("**",)
    exclude: tuple[str, ...] = ()


def parse_section(s: Section) -> FilesConfig:
    """The section, typed and validated (ConfigError names file, key and expectation)."""
    root = s.path("root")
    assert root is not None
    include = s.words("include", ("**",))
    exclude = s.words("exclude", ())
    for key, patterns in (("include", include), ("exclude", exclude)):
        for pattern in patterns:
            if pattern.startswith("/") or ".." in pattern.split("/"):
                raise s.error(key, pattern, "globs relative to root, without '..'")
    if not include:
        raise s.error("include", "", "at least one glob (** = the whole storage directory)")
    cfg = FilesConfig(root=root, include=include, exclude=exclude)
    s.finish()
    return cfg
