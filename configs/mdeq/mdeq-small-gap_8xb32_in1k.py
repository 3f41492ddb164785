# mmpretrain's own ResNet-18 ImageNet config with MDEQ-small in place of ResNet-18: only the
# backbone and the head's channels change. The stock GlobalAveragePooling neck pools every branch
# and LinearClsHead classifies the last one (256 channels, stride 32). configs/mdeq/
# mdeq-small_4xb32_in1k.py is the paper's recipe, with MDEQClsNeck fusing all branches.
_base_ = ['mmpretrain::resnet/resnet18_8xb32_in1k.py']
model = dict(
    backbone=dict(_delete_=True, type='mdeq_mm.MDEQ', arch='small'),
    head=dict(in_channels=256))
