# MDEQ-large with Jacobian regularization (paper: 76.8% top-1 with 15 solver steps): the
# regularization of ./mdeq-small-jr_4xb32_in1k.py with 15/15 steps.
_base_ = './mdeq-small-jr_4xb32_in1k.py'
model = dict(
    backbone=dict(arch='large', unrolled_layers=4, forward_solver=dict(max_iter=15),
                  backward=dict(max_iter=15)),
    neck=dict(in_channels=(80, 160, 320, 640), head_channels=(32, 64, 128, 256)))
