"""MMEngine integration: checkpoint loading, CPU-capable distributed runs, solver hooks, an
optimizer wrapper that skips non-finite updates."""
from . import hooks  # noqa: F401  (registration side effects)
from .checkpoint import load_from_local
from .distributed import (CPUDistributedDataParallel, CPUDistributedRunner,
                          init_cpu_process_group)
from .optim_wrapper import SkipNonFiniteOptimWrapper

__all__ = [
    'load_from_local', 'CPUDistributedDataParallel', 'CPUDistributedRunner',
    'init_cpu_process_group', 'SkipNonFiniteOptimWrapper'
]
