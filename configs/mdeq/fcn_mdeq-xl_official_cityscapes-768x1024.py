# Evaluates the authors' MDEQ-XL Cityscapes checkpoint after tools/model_converters/convert_mdeq_checkpoint.py
# --task seg: their head and validation resize with align_corners=True, and they solve with
# 27 Broyden steps at test time.
_base_ = './fcn_mdeq-xl_4xb3-120k_cityscapes-768x1024.py'
model = dict(backbone=dict(eval_max_iter=27), decode_head=dict(align_corners=True))
