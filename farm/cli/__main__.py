"""`python -m farm.cli`: run the `farm` command line and exit with its status."""

import sys

from farm.cli import main

sys.exit(main())
