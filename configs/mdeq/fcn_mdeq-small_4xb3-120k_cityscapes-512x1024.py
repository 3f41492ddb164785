# MDEQ-small on Cityscapes (paper: 75.1 mIoU val, ~8M parameters, ImageNet-initialized; this
# config trains from scratch, see the *_in1k-pre_* variant for the ImageNet initialization).
_base_ = [
    '../_base_/models/fcn_mdeq-small.py', 'mmseg::_base_/datasets/cityscapes.py',
    'mmseg::_base_/default_runtime.py', '../_base_/schedules/schedule_120k.py',
    '../_base_/mdeq_runtime.py'
]
crop_size = (512, 1024)
warmup_iters = 50000  # the paper's: 50k of the 120k iterations unrolled
model = dict(data_preprocessor=dict(size=crop_size))
train_dataloader = dict(batch_size=3)
optim_wrapper = dict(type='SkipNonFiniteOptimWrapper')
custom_hooks = [
    dict(type='DEQWarmupHook', warmup_ratio=warmup_iters / _base_.max_iters),
    *_base_.custom_hooks[1:]
]
