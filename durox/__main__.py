"""``python -m durox``: the ``durox`` command line."""

import sys

from durox.cli import main

sys.exit(main())
