"""``python -m core …``: the command-line interface (see core/cli/parser.py)."""

import sys

from core.cli.parser import main

if __name__ == "__main__":
    sys.exit(main())
