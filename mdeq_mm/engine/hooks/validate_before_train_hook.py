"""One validation of the initial weights before the first training iteration."""
import random
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@contextmanager
def preserved_rng_state() -> Iterator[None]:
    """Restore the global random states of Python, NumPy and torch (CPU and every CUDA
    device already in use) on exit, so that what runs inside draws nothing the code after it
    would otherwise have drawn."""
    py_state, np_state, torch_state = random.getstate(), np.random.get_state(), \
        torch.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.set_rng_state(torch_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)


@HOOKS.register_module()
class ValidateBeforeTrainHook(Hook):
    """Run the validation loop once before the first training iteration (iteration 0).

    A learning curve then starts at the initial weights: the metric is logged at step 0 like
    any validation (``vis_data/scalars.json``), so a curve over training time has a point at
    0 s. mmengine's train loops validate only after iterations (or epochs), ``val_begin=0``
    included. The hook runs after every other hook's ``before_train`` (priority ``LOWEST``)
    and not when a run resumes past iteration 0. The global random states are restored
    afterwards (creating the validation data loader draws a seed from torch's), so the
    training run is the one it would have been without the hook.

    Example:
        >>> custom_hooks = [dict(type='ValidateBeforeTrainHook')]
    """

    priority = 'LOWEST'

    def before_train(self, runner) -> None:
        """Validate if the run starts at iteration 0 and has a validation loop."""
        if runner.iter != 0 or runner.val_loop is None:
            return
        with preserved_rng_state():
            runner.val_loop.run()
