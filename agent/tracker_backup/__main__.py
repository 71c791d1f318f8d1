"""`python3 -m tracker_backup` entry point."""

import sys

from tracker_backup.cli import main

sys.exit(main())
