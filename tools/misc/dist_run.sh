#!/usr/bin/env bash
# Usage: tools/misc/dist_run.sh NPROC SCRIPT [SCRIPT args]
# Runs SCRIPT in NPROC processes per node with torch.distributed.run: the launcher that
# tools/dist_train.sh and tools/dist_test.sh share. Same variables as mmseg's dist scripts:
# NNODES, NODE_RANK, PORT, MASTER_ADDR (and PYTHON, the interpreter).
NPROC=$1
SCRIPT=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}

PYTHONPATH="$(dirname "$0")/../..":${PYTHONPATH:-} \
"${PYTHON:-python}" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$NPROC" \
    --master_port="$PORT" \
    "$SCRIPT" \
    "${@:3}"
