#!/usr/bin/env bash
# Usage: tools/dist_train.sh CONFIG GPUS [train.py args]
# Same variables as mmseg's script: NNODES, NODE_RANK, PORT, MASTER_ADDR (and PYTHON, the interpreter). GPUS is the number of
# processes per node; on a machine without GPUs they train on the CPU with the gloo backend.
CONFIG=$1
GPUS=$2
TOOLS=$(dirname "$0")

exec bash "$TOOLS/misc/dist_run.sh" "$GPUS" "$TOOLS/train.py" "$CONFIG" --launcher pytorch "${@:3}"
