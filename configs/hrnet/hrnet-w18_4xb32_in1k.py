# HRNet-W18 baseline (mmpretrain: 76.75% top-1) with the MDEQ ImageNet schedule, so that the
# comparison with ../mdeq/mdeq-*_4xb32_in1k.py is one command apart: mmpretrain's
# hrnet-w18_4xb32_in1k.py with ../_base_/schedules/imagenet_bs128_coslr_100e.py.
_base_ = [
    'mmpretrain::_base_/models/hrnet/hrnet-w18.py',
    'mmpretrain::_base_/datasets/imagenet_bs32_pil_resize.py',
    '../_base_/schedules/imagenet_bs128_coslr_100e.py', 'mmpretrain::_base_/default_runtime.py'
]
