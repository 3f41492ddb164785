from . import backbones, layers, necks  # noqa: F401  (registration side effects)
from .backbones import MDEQ
from .layers import MDEQModule
from .necks import MDEQClsNeck

__all__ = ['MDEQ', 'MDEQModule', 'MDEQClsNeck']
