# The MDEQ paper's ImageNet schedule: SGD Nesterov 0.9, lr 0.05, cosine over 100 epochs, batch 128
# in total (10009 iterations an epoch).
iters_per_epoch = 10009
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-5))
param_scheduler = dict(type='CosineAnnealingLR', T_max=100, by_epoch=True, begin=0, end=100)
train_cfg = dict(by_epoch=True, max_epochs=100, val_interval=1)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=128)
