"""``python -m sync_core``: see sync_core.cli."""

import sys

from sync_core.cli import main

sys.exit(main())
