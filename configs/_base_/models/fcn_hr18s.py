# HRNetV2-W18-Small + FCN: mmseg's HRNetV2-W18 model with the fewer blocks and modules of its
# W18-Small configs (configs/hrnet/fcn_hr18s_*.py in mmseg).
_base_ = 'mmseg::_base_/models/fcn_hr18.py'
model = dict(
    pretrained='open-mmlab://msra/hrnetv2_w18_small',
    backbone=dict(
        extra=dict(
            stage1=dict(num_blocks=(2, )),
            stage2=dict(num_blocks=(2, 2)),
            stage3=dict(num_modules=3, num_blocks=(2, 2, 2)),
            stage4=dict(num_modules=2, num_blocks=(2, 2, 2, 2)))))
