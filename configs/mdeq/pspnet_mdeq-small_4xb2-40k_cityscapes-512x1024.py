# mmseg's own PSPNet-R50-D8 Cityscapes config with MDEQ-small in place of ResNet-50: only the
# backbone and the heads' channels change (the PSP head on the coarsest branch, stride 32, the
# auxiliary FCN head on the third, as on ResNet's stages 4 and 3).
# pretrained=None: the base's ResNet weights (open-mmlab://) do not fit MDEQ.
_base_ = ['mmseg::pspnet/pspnet_r50-d8_4xb2-40k_cityscapes-512x1024.py']
model = dict(
    pretrained=None,
    backbone=dict(_delete_=True, type='mdeq_mm.MDEQ', arch='small'),
    decode_head=dict(in_channels=256, in_index=3),
    auxiliary_head=dict(in_channels=128, in_index=2))
