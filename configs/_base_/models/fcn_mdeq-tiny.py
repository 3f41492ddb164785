# A tiny MDEQ segmentor for CPU runs: 3 branches of 16-32-64 channels (strides 4-16), expansion
# 4, BN outside f, 12/12 solver steps (backward tolerance 1e-2, which a 12-step budget reaches
# once trained), 4 unrolled warm-up layers, no dropout.
_base_ = ['./fcn_mdeq-small.py']
num_channels = (16, 32, 64)
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    data_preprocessor=dict(test_cfg=dict(size_divisor=16)),
    backbone=dict(
        arch=dict(_delete_=True, num_channels=num_channels, expansion=4),
        norm_cfg=norm_cfg,
        dropout=0.0,
        forward_solver=dict(max_iter=12),
        backward=dict(max_iter=12, tol=1e-2),
        unrolled_layers=4),
    decode_head=dict(
        in_channels=list(num_channels),
        in_index=(0, 1, 2),
        channels=sum(num_channels),
        norm_cfg=norm_cfg))
