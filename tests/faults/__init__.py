"""Fault-injection suite (issue 6): crashes, full disks, races and bad input."""
