#!/usr/bin/env bash
# Spark GPU discovery script: prints the GPUs this machine (or container) can see as
#   {"name":"gpu","addresses":["0","1"]}
# Spark runs it on each worker (spark.worker.resource.gpu.discoveryScript) or executor
# (spark.executor.resource.gpu.discoveryScript) and hands the addresses to tasks through
# TaskContext.resources()["gpu"]. With no nvidia-smi or no GPU it prints an empty list, and a
# worker configured with spark.worker.resource.gpu.amount > 0 then refuses to start, which is
# the error you want to see.
set -euo pipefail

addresses=""
if command -v nvidia-smi >/dev/null 2>&1; then
  # One index per line ("0", "1", ...); a failing nvidia-smi (no driver) means no GPUs.
  indices=$(nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null || true)
  for index in $indices; do
    case "$index" in
      *[!0-9]*) continue ;;  # skip anything that is not a plain index
    esac
    addresses="${addresses:+$addresses,}\"$index\""
  done
fi
printf '{"name":"gpu","addresses":[%s]}\n' "$addresses"
