"""``python -m nlbench`` is the ``nlbench`` command."""

import sys

from nlbench.commands import main

if __name__ == "__main__":
    sys.exit(main())
