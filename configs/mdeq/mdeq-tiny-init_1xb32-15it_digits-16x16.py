# The learned initializer of the digits MDEQ-tiny (see
# fcn_mdeq-tiny-init_1xb4-15it_demo-cityscapes-64x128.py): the trained classifier is loaded and
# frozen, and only the initializer (2% of the backbone's parameters) is fitted to the equilibria
# the model solves from zeros, for 5% of the classifier's 300 training iterations:
#   python tools/train.py configs/mdeq/mdeq-tiny-init_1xb32-15it_digits-16x16.py \
#       --cfg-options load_from=work_dirs/digits/iter_300.pth
_base_ = ['./mdeq-tiny_1xb32-300it_digits-16x16.py']
model = dict(
    backbone=dict(initializer=dict(type='MDEQInitializer', target_solver=dict(tol=1e-3))))
optim_wrapper = dict(
    _delete_=True,
    type='SkipNonFiniteOptimWrapper',
    optimizer=dict(type='Adam', lr=5e-2),
    clip_grad=dict(max_norm=1.0))
param_scheduler = []
train_cfg = dict(by_epoch=False, max_iters=15, val_interval=15)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=5, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', interval=15, by_epoch=False))
# the runtime's DEQ hooks stay first; the warm-up switch does not change the fit
custom_hooks = [*_base_.custom_hooks[:2], dict(type='InitializerTrainingHook')]
