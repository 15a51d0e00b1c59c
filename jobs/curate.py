"""spark-submit entry point for the whole pipeline; takes the arguments of ``imgcurate run``.

spark-submit --properties-file conf/spark-gpu.conf jobs/curate.py --config s3://b/pipeline.yaml
"""

import sys

from imgcurate.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
