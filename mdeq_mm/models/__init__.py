from . import backbones, layers, losses, necks  # noqa: F401  (registration side effects)
from .backbones import MDEQ
from .layers import MDEQModule
from .losses import correction_weights, fixed_point_correction_losses
from .necks import MDEQClsNeck

__all__ = [
    'MDEQ', 'MDEQModule', 'MDEQClsNeck', 'correction_weights', 'fixed_point_correction_losses'
]
