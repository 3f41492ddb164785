from .initializer import MDEQInitializer
from .mdeq_module import MDEQModule
from .residual_block import MDEQBasicBlock
from .variational_dropout import VariationalDropout2d
from .weight_norm_conv import WeightNormConv2d

__all__ = [
    'MDEQInitializer', 'WeightNormConv2d', 'VariationalDropout2d', 'MDEQBasicBlock', 'MDEQModule']
