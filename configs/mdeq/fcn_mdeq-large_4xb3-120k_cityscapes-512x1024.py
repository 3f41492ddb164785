# MDEQ-large on Cityscapes (80-160-320-640 channels, variational dropout 0.03).
_base_ = './fcn_mdeq-small_4xb3-120k_cityscapes-512x1024.py'
num_channels = (80, 160, 320, 640)
model = dict(
    backbone=dict(arch='large', dropout=0.03),
    decode_head=dict(in_channels=list(num_channels), channels=sum(num_channels)))
