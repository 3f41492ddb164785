# HRNet baseline with the MDEQ schedule (batch 4x3, 120k iterations), so that the comparison
# with ../mdeq/fcn_mdeq-*_4xb3-120k_cityscapes-512x1024.py is one command apart.
_base_ = 'mmseg::hrnet/fcn_hr18s_4xb2-80k_cityscapes-512x1024.py'
optim_wrapper = dict(optimizer=dict(lr=0.01))
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=120000, by_epoch=False)
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=120000, val_interval=12000)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=12000))
train_dataloader = dict(batch_size=3)
