#!/usr/bin/env bash
# Check the CUDA paths in one step; each part runs under `timeout` (TESTS_TIMEOUT, default 300 s,
# and CHECK_TIMEOUT, default 280 s):
#   1. the tests marked `cuda` (MDEQ on CUDA vs CPU, dropout masks, AMP steps, hooks in a CUDA
#      runner); they are skipped, with the reason, where torch sees no GPU;
#   2. tools/misc/check_gpu.py: AMP and fp32 training steps of MDEQ-small (implicit) and
#      HRNet-W18 at 512x1024 with torch.cuda.max_memory_allocated and step times.
# Arguments go to tools/misc/check_gpu.py, e.g. a CPU smoke run:
#   bash tools/check_gpu.sh --device cpu --precision fp32 --size 64 128 --batch 1 --steps 1
# The report (report.md, report.json, the test log) goes to $WORK_DIR, which is printed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python}
WORK_DIR=${WORK_DIR:-work_dirs/check_gpu/$(date +%Y%m%d_%H%M%S)}
mkdir -p "$WORK_DIR"
echo "GPU check: report in $WORK_DIR"
"$PYTHON" -c 'import torch; print("torch", torch.__version__, "CUDA GPU:",
    torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")' | tee "$WORK_DIR/device.txt"

tests=0
timeout "${TESTS_TIMEOUT:-300}" "$PYTHON" -m pytest tests -m cuda -rs -q -p no:cacheprovider \
    --junitxml "$WORK_DIR/cuda_tests.xml" 2>&1 | tee "$WORK_DIR/cuda_tests.log" || tests=$?
timeout "${CHECK_TIMEOUT:-280}" "$PYTHON" tools/misc/check_gpu.py --work-dir "$WORK_DIR" "$@"
echo "GPU check: report in $WORK_DIR (cuda tests exit code $tests)"
exit "$tests"
