"""``python -m feedtag.cli``: the ``feedtag`` command."""

import sys

from feedtag.cli import main

sys.exit(main())
