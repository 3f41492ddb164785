# MDEQ-large on CIFAR-10 (paper: 93.6% with augmentation, 10M parameters): 4 branches of
# 32-64-128-256 channels at strides 1-8, head channels 14-28-56-112, 1680 final channels.
_base_ = './mdeq-tiny_1xb128_cifar10.py'
model = dict(
    backbone=dict(arch='cifar-large', dropout=0.3),
    neck=dict(in_channels=(32, 64, 128, 256), head_channels=(14, 28, 56, 112),
              final_channels=1680),
    head=dict(in_channels=1680))
param_scheduler = dict(type='CosineAnnealingLR', T_max=220, by_epoch=True, begin=0, end=220)
train_cfg = dict(max_epochs=220)
