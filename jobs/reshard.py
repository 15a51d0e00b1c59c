"""spark-submit entry point for ``reshard``; takes the same arguments as ``imgcurate reshard``.

    spark-submit --master yarn jobs/reshard.py --tables s3://bucket/tables \
        --dest s3://bucket/curated --where "status = 'ok' AND width >= 256"
"""

import sys

from imgcurate.cli import main

if __name__ == "__main__":
    sys.exit(main(["reshard", *sys.argv[1:]]))
