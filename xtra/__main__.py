"""``python -m xtra``: the ``xtra`` command."""

import sys

from xtra.cli import main

sys.exit(main())
