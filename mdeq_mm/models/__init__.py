from . import layers, necks  # noqa: F401  (necks register into MODELS)
from .layers import MDEQModule
from .necks import MDEQClsNeck

__all__ = ['MDEQModule', 'MDEQClsNeck']
