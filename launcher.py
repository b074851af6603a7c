"""Start the dynalauncher daemon: `python launcher.py [flags]` (same as `dynalauncher serve`)."""

import sys

from serv.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
