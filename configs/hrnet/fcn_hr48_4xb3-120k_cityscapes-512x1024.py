# HRNetV2-W48 baseline with the MDEQ schedule (batch 4x3, 120k iterations): the W48 widths of
# mmseg's fcn_hr48_4xb2-80k_cityscapes-512x1024.py on ./fcn_hr18_4xb3-120k_cityscapes-512x1024.py.
_base_ = './fcn_hr18_4xb3-120k_cityscapes-512x1024.py'
num_channels = (48, 96, 192, 384)
model = dict(
    pretrained='open-mmlab://msra/hrnetv2_w48',
    backbone=dict(
        extra=dict(
            stage2=dict(num_channels=num_channels[:2]),
            stage3=dict(num_channels=num_channels[:3]),
            stage4=dict(num_channels=num_channels))),
    decode_head=dict(in_channels=list(num_channels), channels=sum(num_channels)))
