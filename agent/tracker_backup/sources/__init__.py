"""Backup sources: one module per kind, all with the small `Source` interface."""

from __future__ import annotations

from tracker_backup.config import Config
from tracker_backup.sources.base import RunContext, Source, SourceResult


def configured_sources(config: Config) -> list[Source]:
    """The sources the configuration asks for, in backup order."""
    sources: list[Source] = []
    if config.sqlite is not None:
        from tracker_backup.sources.sqlite import SqliteSource

        sources.append(SqliteSource(config.sqlite))
    if config.mysql is not None:
        from tracker_backup.sources.mysql import MysqlSource

        sources.append(MysqlSource(config.mysql))
    if config.files is not None:
        from tracker_backup.sources.files import FilesSource

        sources.append(FilesSource(config.files, sqlite=config.sqlite))
    return sources


def source_for_kind(config: Config, kind: str) -> Source | None:
    """The configured source of one kind (sqlite, mysql, files), if any."""
    for source in configured_sources(config):
        if source.kind == kind:
            return source
    return None


__all__ = ["RunContext", "Source", "SourceResult", "configured_sources", "source_for_kind"]
