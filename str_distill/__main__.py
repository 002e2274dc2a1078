"""``python -m str_distill``: the ``str-distill`` command line (same commands, options and exit codes)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
