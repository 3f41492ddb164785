# MDEQ-small on ImageNet (paper: 75.4-75.5% top-1, 18M parameters, 27 solver steps).
_base_ = [
    '../_base_/models/mdeq-small_in1k.py',
    'mmpretrain::_base_/datasets/imagenet_bs32_pil_resize.py',
    '../_base_/schedules/imagenet_mdeq_100e.py', 'mmpretrain::_base_/default_runtime.py'
]
