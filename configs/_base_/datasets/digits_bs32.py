# scikit-learn's handwritten digits (real 8x8 scans, upscaled to 16x16) as an mmpretrain
# CustomDataset: 1,347 training and 450 test images, written by
# mdeq_mm.datasets.write_digits_dataset (the learning benchmark does it). No augmentation.
data_preprocessor = dict(num_classes=10, mean=[77.8] * 3, std=[95.9] * 3, to_rgb=False)
digits = dict(
    type='CustomDataset',
    data_root='data/digits',
    classes=('0', '1', '2', '3', '4', '5', '6', '7', '8', '9'),
    pipeline=[dict(type='LoadImageFromFile'), dict(type='PackInputs')])
train_dataloader = dict(
    batch_size=32,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(**digits, data_prefix='train'),
    sampler=dict(type='InfiniteSampler', shuffle=True))
val_dataloader = dict(
    train_dataloader,
    batch_size=64,
    dataset=dict(**digits, data_prefix='test'),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = val_dataloader
test_evaluator = val_evaluator
