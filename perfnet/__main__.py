"""The ``perfnet`` command (and ``python -m perfnet``): Ctrl-C exits 130 quietly from its first
instant, also while pandas and pyarrow are still being imported.

Arrow's C++ parts (the Parquet reader and writer, compute kernels) allocate from the pool its
build chose, mimalloc, whatever ``pyarrow.set_memory_pool`` says, and mimalloc keeps freed
pages resident in every thread that touched them: ``perfnet convert`` of the 5,141,871-line
benchmark capture peaked at 315 MiB with it, 246 MiB with the system's malloc.  The pool is
chosen once, when pyarrow loads, so the command chooses it first (a user's own
``ARROW_DEFAULT_MEMORY_POOL`` wins)."""

from __future__ import annotations

import os
import sys


def main() -> int:
    """Run the command line; the exit status."""
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    try:
        from perfnet.cli import main as run  # pandas, pyarrow, matplotlib: a second or two

        return run()
    except KeyboardInterrupt:  # before the command's own handling begins
        return 130


if __name__ == "__main__":
    sys.exit(main())
