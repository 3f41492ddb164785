# Small-data schedule: Adam, cosine decay over 300 iterations, validation every 50.
max_iters = 300
optim_wrapper = dict(optimizer=dict(type='Adam', lr=2e-3, weight_decay=0.0))
param_scheduler = dict(type='CosineAnnealingLR', T_max=max_iters, by_epoch=False, begin=0,
                       end=max_iters)
train_cfg = dict(by_epoch=False, max_iters=max_iters, val_interval=50)
val_cfg = dict()
test_cfg = dict()
log_processor = dict(by_epoch=False)
