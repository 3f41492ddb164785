#!/usr/bin/env bash
# One-command entry points on a fresh Linux machine (CPU is enough):
#   bash tools/quickstart.sh demo   set up, then train MDEQ on a generated Cityscapes-format set
#   bash tools/quickstart.sh test   set up, then run the whole test suite
#   bash tools/quickstart.sh setup  set up only
# Setup is idempotent: it creates a virtual environment in $MDEQ_VENV (default: .venv in the
# repository), installs torch, mmcv with compiled ops (tools/install_mmcv.py; a directory of
# prebuilt wheels can be given in $MDEQ_MMCV_WHEEL_DIR) and this package in editable mode with
# its test and optional extras, all at the tested versions of requirements/pinned.txt. It is
# skipped when nothing it depends on has changed.
# demo and test run torch with one OpenMP/MKL thread unless OMP_NUM_THREADS / MKL_NUM_THREADS are
# set: the tiny models here gain little from more threads, and on a machine whose cores are busy
# with other work, threads that wait for each other made demo iterations about 10x slower.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${MDEQ_VENV:-$ROOT/.venv}
PY=$VENV/bin/python
WORK_DIR=${MDEQ_WORK_DIR:-$ROOT/work_dirs/demo}

# torch 2.14.1 from PyPI is a CUDA build: with its nvidia-* packages and the rest the environment
# takes about 6.5 GB. Say so before pip fails half-way with "No space left on device".
NEED_GB=${MDEQ_SETUP_FREE_GB:-7}
check_free_space() {
    "$PY" -c 'import torch' 2>/dev/null && return 0
    local dir=$VENV free_gb
    while [[ ! -d $dir ]]; do dir=$(dirname "$dir"); done
    free_gb=$(df -Pk "$dir" | awk 'NR == 2 {print int($4 / 1048576)}')
    if (( free_gb < NEED_GB )); then
        echo "quickstart: $free_gb GB free under $dir; setting up the environment needs about" \
            "$NEED_GB GB (torch with its CUDA libraries). Free some space, point MDEQ_VENV" \
            "elsewhere, or set MDEQ_SETUP_FREE_GB to lower the check." >&2
        return 1
    fi
}

setup() {
    local stamp=$VENV/.mdeq_mm_setup
    local want
    want=$(cat "$ROOT"/requirements/*.txt "$ROOT/setup.py" "$ROOT/tools/install_mmcv.py" | sha256sum | cut -d' ' -f1)
    if [[ -f $stamp && $(cat "$stamp") == "$want" ]] && "$PY" -c 'import mdeq_mm' 2>/dev/null; then
        return 0
    fi
    check_free_space
    [[ -x $PY ]] || python3 -m venv "$VENV"
    # torch and the build tools first: the mmcv build compiles against the installed torch.
    "$PY" -m pip install wheel
    "$PY" -m pip install $(grep -E '^(torch|torchvision|setuptools)==' "$ROOT/requirements/pinned.txt")
    "$PY" "$ROOT/tools/install_mmcv.py"
    "$PY" -m pip install -c "$ROOT/requirements/pinned.txt" -e "$ROOT[tests,optional]"
    echo "$want" > "$stamp"
}

run_tests() {
    cd "$ROOT"
    local rc=0
    "$PY" -m pytest tests "$@" || rc=$?
    # pytest exits 5 when it collected nothing: that is a failure here, not a pass.
    if [[ $rc == 5 ]]; then
        echo "quickstart: pytest collected no tests" >&2
    fi
    return $rc
}

run_demo() {
    cd "$ROOT"
    "$PY" tools/generate_demo_data.py --out-dir "$ROOT/data/mdeq_demo_cityscapes"
    "$PY" tools/train.py configs/mdeq/fcn_mdeq-tiny_1xb4-300it_demo-cityscapes-64x128.py \
        --work-dir "$WORK_DIR" "$@"
}

export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
cmd=${1:-}
[[ $# -gt 0 ]] && shift
case $cmd in
    setup) setup ;;
    test) setup; run_tests "$@" ;;
    demo) setup; run_demo "$@" ;;
    *) echo "usage: bash tools/quickstart.sh {demo|test|setup} [extra args]" >&2; exit 2 ;;
esac
