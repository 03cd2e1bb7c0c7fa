"""``python -m nlbench`` is the ``nlbench`` command, without the current folder on the import path (as ``python -P``
and the installed ``nlbench`` command)."""

import sys

from nlbench.commands import drop_current_folder, main

if __name__ == "__main__":
    drop_current_folder()
    sys.exit(main())
