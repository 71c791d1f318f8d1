"""tracker-backup: consistent, verified backups of a Torrust tracker host."""

__version__ = "0.1.0"
