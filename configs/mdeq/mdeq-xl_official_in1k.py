# Evaluates the authors' MDEQ-XL ImageNet checkpoint after tools/model_converters/convert_mdeq_checkpoint.py
# --task cls, with their test-time budget of 27 Broyden steps.
_base_ = './mdeq-xl_4xb32_in1k.py'
model = dict(backbone=dict(eval_max_iter=27))
