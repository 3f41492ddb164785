# MDEQ-small on Cityscapes initialized from an ImageNet-trained MDEQ-small classifier (one model
# for both tasks, as in the paper). Point `checkpoint` at a checkpoint of
# ../mdeq/mdeq-small_4xb32_in1k.py (or a converted official one, tools/model_converters/convert_mdeq_checkpoint.py).
_base_ = './fcn_mdeq-small_4xb3-120k_cityscapes-512x1024.py'
model = dict(
    backbone=dict(
        init_cfg=dict(
            type='Pretrained', checkpoint='checkpoints/mdeq-small_in1k.pth',
            prefix='backbone.')))
