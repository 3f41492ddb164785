# mmseg's own FCN-HRNetV2-W18 Cityscapes config with MDEQ-small in place of HRNet: only the
# backbone and the head's channels change. Nothing else is needed: the backbone logs its solver
# statistics itself, and type='mdeq_mm.MDEQ' finds the package without custom_imports.
# pretrained=None: the base's HRNet weights (open-mmlab://) do not fit MDEQ.
_base_ = ['mmseg::hrnet/fcn_hr18_4xb2-40k_cityscapes-512x1024.py']
model = dict(
    pretrained=None,
    backbone=dict(_delete_=True, type='mdeq_mm.MDEQ', arch='small'),
    decode_head=dict(in_channels=[32, 64, 128, 256], channels=480))
