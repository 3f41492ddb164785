# MDEQ-XL on ImageNet (88-176-352-704 channels, expansion 6; 27/27 solver steps).
_base_ = './mdeq-small_4xb32_in1k.py'
model = dict(
    backbone=dict(
        arch='xl', unrolled_layers=4, forward_solver=dict(max_iter=27)),
    neck=dict(in_channels=(88, 176, 352, 704), head_channels=(32, 64, 128, 256)))
