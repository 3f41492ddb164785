from .fusion import (FusionDownsample, FusionUpsample, build_fuse_layers,
                     build_post_fuse_layers, fuse_branches)
from .mdeq_module import MDEQBranch, MDEQModule
from .residual_block import MDEQBasicBlock
from .variational_dropout import VariationalDropout2d
from .weight_norm_conv import (WeightNormConv2d, make_conv, release_weight_norm,
                               reset_weight_norm)

__all__ = [
    'WeightNormConv2d', 'make_conv', 'release_weight_norm', 'reset_weight_norm',
    'VariationalDropout2d', 'MDEQBasicBlock', 'FusionUpsample',
    'FusionDownsample', 'build_fuse_layers', 'build_post_fuse_layers',
    'fuse_branches', 'MDEQBranch', 'MDEQModule'
]
