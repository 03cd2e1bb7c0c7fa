"""``python -m nlbench.sweep`` is ``nlbench sweep`` (without the current folder on the import path, as ``nlbench``)."""

import sys

from nlbench.commands import drop_current_folder

if __name__ == "__main__":
    drop_current_folder()
    from nlbench.sweep.cli import main

    sys.exit(main())
