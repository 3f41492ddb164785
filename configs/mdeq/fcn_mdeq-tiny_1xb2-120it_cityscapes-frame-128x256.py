# Learning benchmark, segmentation: the tiny MDEQ over-fits one real Cityscapes frame in 120
# iterations (a third unrolled); compare with
# ../hrnet/fcn_hr18s_1xb2-120it_cityscapes-frame-128x256.py.
_base_ = [
    '../_base_/models/fcn_mdeq-tiny.py', '../_base_/datasets/cityscapes_frame-128x256.py',
    '../_base_/schedules/frame_sgd_120it.py', 'mmseg::_base_/default_runtime.py',
    '../_base_/mdeq_runtime.py'
]
model = dict(data_preprocessor=dict(size=(128, 256)))
optim_wrapper = dict(type='SkipNonFiniteOptimWrapper')
custom_hooks = [dict(type='DEQWarmupHook', warmup_ratio=1 / 3), *_base_.custom_hooks[1:]]
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)
