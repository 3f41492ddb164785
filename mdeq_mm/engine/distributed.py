"""Multi-process training on CPU-only machines (gloo), GPU behaviour unchanged.

mmengine 0.10.x assumes CUDA in two places of a distributed run: ``init_dist`` calls
``torch.cuda.set_device`` and ``Runner.wrap_model`` passes ``device_ids`` to DDP, which torch
rejects for CPU modules. ``CPUDistributedRunner`` (``runner_type``) starts a gloo process group
itself when CUDA is unavailable, and ``CPUDistributedDataParallel`` (``model_wrapper_cfg``)
drops ``device_ids`` there. With CUDA both defer to the stock code paths.

A gloo group left to the interpreter's exit can abort the process after a finished run
(``terminate called without an active exception``, exit code -6, in about one run of ten with
torch 2.14): a gloo worker thread releases the tensors of the last collective after the caller
has been woken, and releasing a tensor that Python owned needs the GIL, which a thread cannot
take once the interpreter finalizes. At exit the group started here therefore waits for every
rank, gives its worker threads the GIL for a moment and is destroyed; not after an uncaught
exception, where another rank may never reach the barrier.
"""
import atexit
import os
import sys
import time
from typing import Dict

import torch
import torch.distributed as torch_dist
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS, RUNNERS
from mmengine.runner import Runner

# How long the exit handler leaves the GIL to gloo's worker threads.
WORKER_RELEASE_S = 0.1


def init_cpu_process_group() -> bool:
    """Start a gloo process group from torchrun's environment if CUDA is unavailable.

    Returns:
        bool: Whether a process group was started here.
    """
    if (torch.cuda.is_available() or 'RANK' not in os.environ
            or torch_dist.is_initialized()):
        return False
    torch_dist.init_process_group(backend='gloo')
    atexit.register(_destroy_process_group_after_success)
    return True


def _destroy_process_group_after_success() -> None:
    """Finish the process group at exit unless an uncaught exception ends the process.

    Python sets ``sys.last_value`` when it prints an uncaught exception, before exit handlers.
    """
    if not torch_dist.is_initialized() or getattr(sys, 'last_value', None) is not None:
        return
    torch_dist.barrier()
    time.sleep(WORKER_RELEASE_S)  # without the GIL: the workers release their last tensors
    torch_dist.destroy_process_group()


@RUNNERS.register_module()
class CPUDistributedRunner(Runner):
    """The stock :class:`mmengine.runner.Runner`, also launchable multi-process on CPU.

    Select it with ``runner_type = 'CPUDistributedRunner'``; mmseg's and mmpretrain's own
    ``tools/train.py`` build it through the ``RUNNERS`` registry.
    """

    def setup_env(self, env_cfg: Dict) -> None:
        if self.distributed:
            init_cpu_process_group()
        super().setup_env(env_cfg)


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """:class:`MMDistributedDataParallel` that accepts CPU modules.

    Select it with ``model_wrapper_cfg = dict(type='CPUDistributedDataParallel')``. Without CUDA
    the ``device_ids`` that mmengine passes are dropped (torch requires None for CPU modules).

    Args:
        module (nn.Module): Model to wrap.
        **kwargs: Passed to :class:`MMDistributedDataParallel`.
    """

    def __init__(self, module: torch.nn.Module, **kwargs) -> None:
        if not torch.cuda.is_available():
            kwargs.pop('device_ids', None)
            kwargs.pop('output_device', None)
        super().__init__(module=module, **kwargs)
