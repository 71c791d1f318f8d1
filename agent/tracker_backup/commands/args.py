"""Argument shapes several commands share (so each verb's register() stays a few lines)."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def snapshot_command(subparsers, name: str, *, help: str, description: str,  # noqa: A002
                     handler: Callable) -> argparse.ArgumentParser:
    """A command on one snapshot: `NAME [ID]` (ID defaults to latest)."""
    p = subparsers.add_parser(name, help=help, description=description)
    p.add_argument("id", nargs="?", default="latest", help="snapshot id or 'latest' (default)")
    p.set_defaults(handler=handler)
    return p


def view_command(subparsers, name: str, *, help: str,  # noqa: A002
                 view: Callable[..., int]) -> argparse.ArgumentParser:
    """A read-only view printed as text or, with --json, as JSON: view(config, as_json, out)."""
    p = subparsers.add_parser(name, help=help)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=lambda args, config, out: view(config, as_json=args.json, out=out))
    return p
