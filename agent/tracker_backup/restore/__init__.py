"""Restoring snapshots: one module per kind (sqlite, files, mysql) plus the plan.

plan.py picks the snapshot and its artifacts and verifies their checksums
before anything is touched; each kind's module restores one artifact and says
what it replaced. The CLI (actions/restore_cli.py) and the drill
(actions/drill.py) are thin layers over these.
"""
