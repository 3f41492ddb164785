#!/usr/bin/env bash
# Usage: tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py args]
# Same variables as mmseg's script: NNODES, NODE_RANK, PORT, MASTER_ADDR (and PYTHON, the interpreter). GPUS is the number of
# processes per node; on a machine without GPUs they run on the CPU with the gloo backend.
CONFIG=$1
CHECKPOINT=$2
GPUS=$3
TOOLS=$(dirname "$0")

exec bash "$TOOLS/misc/dist_run.sh" "$GPUS" "$TOOLS/test.py" "$CONFIG" "$CHECKPOINT" \
    --launcher pytorch "${@:4}"
