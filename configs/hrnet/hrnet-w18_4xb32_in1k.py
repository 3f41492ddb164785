# HRNet-W18 baseline (mmpretrain: 76.75% top-1) with the MDEQ ImageNet schedule, so that the
# comparison with ../mdeq/mdeq-*_4xb32_in1k.py is one command apart.
_base_ = 'mmpretrain::hrnet/hrnet-w18_4xb32_in1k.py'
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-5))
param_scheduler = dict(type='CosineAnnealingLR', T_max=100, by_epoch=True, begin=0, end=100)
train_cfg = dict(by_epoch=True, max_epochs=100, val_interval=1)
