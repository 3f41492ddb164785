# MDEQ-tiny for 32x32-class images (the authors' CIFAR-tiny): 2 branches of 24 channels at
# stride 1 and 2, the stem output injected directly, head channels 8-16 and 200 final channels,
# 18/20 solver steps, 10 unrolled warm-up layers, dropout 0.25.
_base_ = ['./mdeq-small_in1k.py']
model = dict(
    backbone=dict(
        arch='cifar-tiny',
        dropout=0.25,
        forward_solver=dict(max_iter=18),
        backward=dict(max_iter=20),
        unrolled_layers=10),
    neck=dict(in_channels=(24, 24), head_channels=(8, 16), final_channels=200),
    head=dict(num_classes=10, in_channels=200, topk=(1, )))
