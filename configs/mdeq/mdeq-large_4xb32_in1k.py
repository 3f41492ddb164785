# MDEQ-large on ImageNet (paper: 77.5% top-1, 63M parameters; 4 unrolled warm-up layers).
_base_ = './mdeq-small_4xb32_in1k.py'
model = dict(
    backbone=dict(arch='large', unrolled_layers=4),
    neck=dict(in_channels=(80, 160, 320, 640), head_channels=(32, 64, 128, 256)))
