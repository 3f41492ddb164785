# MDEQ-small on ImageNet (paper: 75.4-75.5% top-1, 18M parameters, 27 solver steps); half of
# the run unrolled.
_base_ = [
    '../_base_/models/mdeq-small_in1k.py',
    'mmpretrain::_base_/datasets/imagenet_bs32_pil_resize.py',
    '../_base_/schedules/imagenet_bs128_coslr_100e.py', 'mmpretrain::_base_/default_runtime.py',
    '../_base_/mdeq_runtime.py'
]
optim_wrapper = dict(type='SkipNonFiniteOptimWrapper')
