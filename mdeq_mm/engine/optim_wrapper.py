"""An optimizer wrapper that skips updates with NaN/Inf instead of applying them."""
import logging
from contextlib import contextmanager
from typing import Iterator, List, Optional, Tuple

import torch
from mmengine.dist import all_reduce
from mmengine.logging import print_log
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS
from torch import Tensor, nn

SKIPPED_STEPS = 'skipped_steps'


@OPTIM_WRAPPERS.register_module()
class SkipNonFiniteOptimWrapper(OptimWrapper):
    """:class:`~mmengine.optim.OptimWrapper` that skips an update instead of writing NaN/Inf
    into the model, like the inf check of AMP's ``GradScaler`` but in any precision.

    Before clipping and stepping it checks that every gradient, and every buffer of the model
    (BN running statistics, updated by the forward), is finite. If anything is NaN/Inf on any
    rank (the flag is all-reduced, so all ranks skip together), the optimizer step is not taken,
    the gradients are zeroed as after any update, and the model's buffers are restored to their
    values before the iteration's forward (before the first forward of an accumulation window).
    Each skip logs a warning; the number of skipped steps so far is written to the MessageHub
    as ``train/skipped_steps`` after every update and kept in the state dict, so it continues
    after ``--resume``.

    The buffers are copied when :meth:`optim_context` is entered, which the ``train_step`` of
    every OpenMMLab model does around its forward; a model that updates its parameters without
    it still gets skipped steps, but no buffer restore.

    Args:
        **kwargs: Arguments of :class:`~mmengine.optim.OptimWrapper` (``optimizer``,
            ``accumulative_counts``, ``clip_grad``).

    Example:
        >>> optim_wrapper = dict(
        ...     type='SkipNonFiniteOptimWrapper',
        ...     optimizer=dict(type='SGD', lr=0.01, momentum=0.9),
        ...     clip_grad=dict(max_norm=5.0))
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.skipped_steps = 0
        self._snapshot: Optional[List[Tuple[Tensor, Tensor]]] = None

    @contextmanager
    def optim_context(self, model: nn.Module) -> Iterator[None]:
        """The stock context, after copying the model's buffers if no copy is held yet.

        Args:
            model (nn.Module): The training model.
        """
        if self._snapshot is None:
            self._snapshot = [(buf, buf.detach().clone()) for buf in model.buffers()]
        with super().optim_context(model):
            yield

    def step(self, **kwargs) -> None:
        """Clip and step if everything is finite on every rank, else skip and restore.

        Args:
            kwargs: Keyword arguments passed to :meth:`torch.optim.Optimizer.step`.
        """
        snapshot, self._snapshot = self._snapshot or [], None
        if self._all_finite([buf for buf, _ in snapshot]):
            super().step(**kwargs)
        else:
            self.skipped_steps += 1
            for buf, saved in snapshot:
                buf.copy_(saved)
            iteration = self.message_hub.get_info('iter')
            where = '' if iteration is None else f' at iteration {iteration + 1}'
            print_log(
                f'Skipped the optimizer step{where}: NaN/Inf in the gradients or buffers '
                f'(on at least one rank); buffers such as BN running statistics were restored. '
                f'{self.skipped_steps} step(s) skipped so far.',
                logger='current',
                level=logging.WARNING)
        self.message_hub.update_scalar(f'train/{SKIPPED_STEPS}', self.skipped_steps)

    def _all_finite(self, buffers: List[Tensor]) -> bool:
        """Whether all gradients and floating-point ``buffers`` are finite on all ranks."""
        tensors = [
            param.grad for group in self.optimizer.param_groups for param in group['params']
            if param.grad is not None
        ]
        tensors += [buf for buf in buffers if buf.is_floating_point()]
        flags = [torch.isfinite(tensor).all() for tensor in tensors]
        bad = (~torch.stack(flags).all()).float() if flags else torch.zeros(())
        all_reduce(bad, op='max')  # every rank joins, so all of them skip together
        return not bool(bad)

    def state_dict(self) -> dict:
        """The optimizer's state dict plus the number of skipped steps."""
        state_dict = super().state_dict()
        state_dict[SKIPPED_STEPS] = self.skipped_steps
        return state_dict

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a state dict, also one saved by the stock :class:`OptimWrapper`.

        Args:
            state_dict (dict): As returned by :meth:`state_dict`.
        """
        self.skipped_steps = state_dict.pop(SKIPPED_STEPS, 0)
        super().load_state_dict(state_dict)
