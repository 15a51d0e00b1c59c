"""spark-submit entry point for ``scan``; takes the same arguments as ``imgcurate scan``.

spark-submit --master yarn jobs/scan.py --input s3://bucket/shards --tables s3://bucket/tables
"""

import sys

from imgcurate.cli import main

if __name__ == "__main__":
    sys.exit(main(["scan", *sys.argv[1:]]))
