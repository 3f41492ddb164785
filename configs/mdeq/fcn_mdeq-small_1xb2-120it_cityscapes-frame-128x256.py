# Learning benchmark, segmentation: MDEQ-small (8.97M parameters, the size of HRNetV2-W18's
# 9.64M) on the real frame with the authors' recipe and the frame's 12/12 solver budget; the same
# data, schedule and seed as ./fcn_mdeq-tiny_1xb2-120it_cityscapes-frame-128x256.py.
_base_ = './fcn_mdeq-tiny_1xb2-120it_cityscapes-frame-128x256.py'
num_channels = (32, 64, 128, 256)
model = dict(
    data_preprocessor=dict(test_cfg=dict(size_divisor=32)),
    backbone=dict(arch=dict(_delete_=True, num_channels=num_channels, expansion=5)),
    decode_head=dict(in_channels=list(num_channels), in_index=(0, 1, 2, 3),
                     channels=sum(num_channels)))
