"""``python -m ocdl``: the ``ocdl`` command line."""

import sys

from .cli import main

sys.exit(main())
