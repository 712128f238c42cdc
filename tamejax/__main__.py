"""``python -m tamejax``: see ``tamejax.cli``."""

import sys

from tamejax.cli import main

sys.exit(main())
