#!/usr/bin/env python
"""Django's command-line utility for the pitchdesk example app."""

import os
import sys


def main() -> None:
    """Run a management command with this directory importable (so `pitchdesk`, `catalog` resolve)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pitchdesk.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
