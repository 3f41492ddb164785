"""Where the hooks find the MDEQ backbone (and the data model) inside a runner's model."""
from mmengine.model import is_model_wrapper
from torch import nn

from mdeq_mm.models import MDEQ


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
