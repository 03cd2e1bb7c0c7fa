"""``python -m nlbench.sweep`` is ``nlbench sweep``."""

import sys

from nlbench.sweep.cli import main

if __name__ == "__main__":
    sys.exit(main())
