"""spark-submit entry point for ``dedup``; takes the same arguments as ``imgcurate dedup``.

spark-submit --master yarn jobs/dedup.py --tables s3://bucket/tables --semantic-eps 0.01,0.05
"""

import sys

from imgcurate.cli import main

if __name__ == "__main__":
    sys.exit(main(["dedup", *sys.argv[1:]]))
