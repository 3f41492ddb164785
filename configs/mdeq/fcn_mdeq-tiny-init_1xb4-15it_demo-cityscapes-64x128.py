# The learned initializer of the demo MDEQ-tiny (Bai et al., 2022, "Neural Deep Equilibrium
# Solvers"): the trained segmentor is loaded and frozen, and only the initializer (a start state
# predicted from the input injection, 2% of the backbone's parameters) is fitted to the equilibria
# the model solves from zeros, for 5% of the segmentor's 300 training iterations. Train it from
# the segmentor's checkpoint:
#   python tools/train.py configs/mdeq/fcn_mdeq-tiny-init_1xb4-15it_demo-cityscapes-64x128.py \
#       --cfg-options load_from=work_dirs/demo/iter_300.pth
# Its checkpoint holds the whole model, and every solve then starts from the learned state:
# tools/test.py, the inferencers and VideoWarmStart (first frame and scene cuts).
_base_ = ['./fcn_mdeq-tiny_1xb4-300it_demo-cityscapes-64x128.py']
model = dict(
    backbone=dict(
        initializer=dict(
            type='MDEQInitializer', hidden_channels=48, target_solver=dict(tol=1e-3))))
optim_wrapper = dict(
    _delete_=True,
    type='SkipNonFiniteOptimWrapper',
    optimizer=dict(type='Adam', lr=5e-2),
    clip_grad=dict(max_norm=1.0))
param_scheduler = []
train_cfg = dict(type='IterBasedTrainLoop', max_iters=15, val_interval=15)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=5, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=15))
# the runtime's DEQ hooks stay first; the warm-up switch does not change the fit
custom_hooks = [*_base_.custom_hooks[:2], dict(type='InitializerTrainingHook')]
