"""spark-submit entry point for ``sql``; takes the same arguments as ``imgcurate sql``."""

import sys

from imgcurate.cli import main

if __name__ == "__main__":
    sys.exit(main(["sql", *sys.argv[1:]]))
