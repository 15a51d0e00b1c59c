"""spark-submit entry point for ``embed``; takes the same arguments as ``imgcurate embed``.

spark-submit --master yarn --conf spark.executor.resource.gpu.amount=1 \
    --conf spark.task.resource.gpu.amount=1 jobs/embed.py --tables s3://bucket/tables
"""

import sys

from imgcurate.cli import main

if __name__ == "__main__":
    sys.exit(main(["embed", *sys.argv[1:]]))
