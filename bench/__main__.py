"""``python -m bench``: the benchmark of the app against the stand-in."""

import sys

from bench.sync_bench import main

sys.exit(main())
