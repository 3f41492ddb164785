"""The base of the MDEQ hooks: it finds the MDEQ backbone (and the data model) of the runner."""
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from torch import nn
from torch.utils.hooks import RemovableHandle

from mdeq_mm.models import MDEQ
from mdeq_mm.models.head_channels import check_head_channels

# ``BaseModel.forward(inputs, data_samples=None, mode='tensor')``: where a forward hook finds
# the mode when it is passed by position, and its default.
MODE_POSITION = 2
DEFAULT_MODE = 'tensor'


def unwrap_model(model: nn.Module) -> nn.Module:
    """The data model inside (possibly nested) model wrappers such as DDP."""
    while is_model_wrapper(model):
        model = model.module
    return model


def get_mdeq_backbone(model: nn.Module, hook_name: str) -> MDEQ:
    """The first :class:`~mdeq_mm.models.MDEQ` module of ``model``.

    Args:
        model (nn.Module): The runner's model, wrapped or not.
        hook_name (str): Who asks, for the error message.

    Returns:
        MDEQ: The backbone.

    Raises:
        ValueError: If ``model`` contains no MDEQ.
    """
    model = unwrap_model(model)
    for module in model.modules():
        if isinstance(module, MDEQ):
            return module
    raise ValueError(f'{hook_name} needs a model with an MDEQ backbone; found none in '
                     f'{type(model).__name__}')


def iteration_rng(seed: int, iteration: int) -> np.random.Generator:
    """The random generator of training iteration ``iteration``: seeded by ``(seed,
    iteration)`` only, so every rank draws the same without communication and a resumed run
    repeats the draws of the original one."""
    return np.random.default_rng((seed, iteration))


def forward_mode(args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> str:
    """The ``mode`` of a data model's ``forward`` call, as a forward hook sees its arguments."""
    if 'mode' in kwargs:
        return kwargs['mode']
    return args[MODE_POSITION] if len(args) > MODE_POSITION else DEFAULT_MODE


class MDEQHook(Hook):
    """A hook that works on the runner's MDEQ backbone.

    ``before_run`` finds the backbone (:func:`get_mdeq_backbone`, through model wrappers) and
    keeps it as ``self.backbone``, so a model without one fails before anything runs. A
    subclass that extends ``before_run`` calls this one first. One forward hook on the data
    model can be added with :meth:`hook_model_forward`; it is removed after the run.
    """

    backbone: MDEQ
    _forward_handle: Optional[RemovableHandle] = None

    def before_run(self, runner) -> None:
        """Find the MDEQ backbone; fail early if the model has none, or if its heads do not
        take the backbone's channels (:func:`~mdeq_mm.models.head_channels.check_head_channels`:
        any tool, mmseg's and mmpretrain's included, stops before training or testing)."""
        self.backbone = get_mdeq_backbone(runner.model, type(self).__name__)
        check_head_channels(unwrap_model(runner.model))

    def hook_model_forward(self, runner, hook: Callable[..., Any]) -> None:
        """Call ``hook(module, args, kwargs, output)`` after every forward of the data model
        (its return value, if not None, replaces the output), replacing an earlier one."""
        self._remove_forward_hook()
        self._forward_handle = unwrap_model(runner.model).register_forward_hook(
            hook, with_kwargs=True)

    def after_run(self, runner) -> None:
        self._remove_forward_hook()

    def _remove_forward_hook(self) -> None:
        if self._forward_handle is not None:
            self._forward_handle.remove()
            self._forward_handle = None
