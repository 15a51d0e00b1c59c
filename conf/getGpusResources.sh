#!/usr/bin/env bash
# Spark GPU discovery script: prints this machine's GPUs in Spark's resource format,
#   {"name": "gpu", "addresses": ["0", "1"]}
# Use it as spark.executor.resource.gpu.discoveryScript (and, on a standalone cluster,
# spark.worker.resource.gpu.discoveryScript). With no GPU or no nvidia-smi it prints an
# empty address list, which Spark reports as "no GPUs" instead of failing obscurely.
# IMGCURATE_FAKE_GPUS=N advertises N fake addresses (for testing scheduling without GPUs).
set -u
addresses=""
if [[ -n "${IMGCURATE_FAKE_GPUS:-}" ]]; then
  addresses=$(seq -s, 0 $((IMGCURATE_FAKE_GPUS - 1)) | sed -e 's/\([0-9]\+\)/"\1"/g')
elif command -v nvidia-smi >/dev/null 2>&1; then
  addresses=$(nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null \
    | tr -d ' ' | grep -E '^[0-9]+$' | paste -sd, - | sed -e 's/\([0-9]\+\)/"\1"/g')
fi
echo "{\"name\": \"gpu\", \"addresses\": [${addresses}]}"
