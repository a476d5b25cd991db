"""The ``perfnet`` command (and ``python -m perfnet``): Ctrl-C exits 130 quietly from its first
instant, also while pandas and pyarrow are still being imported."""

from __future__ import annotations

import sys


def main() -> int:
    """Run the command line; the exit status."""
    try:
        from perfnet.cli import main as run  # pandas, pyarrow, matplotlib: a second or two

        return run()
    except KeyboardInterrupt:  # before the command's own handling begins
        return 130


if __name__ == "__main__":
    sys.exit(main())
