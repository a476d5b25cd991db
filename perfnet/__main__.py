"""``python -m perfnet``: the same as the ``perfnet`` command."""

import sys

from perfnet.cli import main

sys.exit(main())
