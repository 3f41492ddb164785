# The learned initializer of the benchmark's trained MDEQ-small
# (./fcn_mdeq-small_1xb2-150it_demo-cityscapes-64x128.py): the trained segmentor is loaded and
# frozen and only the initializer is fitted to the equilibria it solves from zeros, for 8
# iterations (5% of the segmentor's 150). tools/analysis_tools/benchmark.py trains it from its
# trained state and times the evaluation forward from the learned start against the cold one:
#   python tools/train.py configs/mdeq/fcn_mdeq-small-init_1xb2-8it_demo-cityscapes-64x128.py \
#       --cfg-options load_from=work_dirs/benchmark/trained_state/iter_150.pth
_base_ = ['./fcn_mdeq-small_1xb2-150it_demo-cityscapes-64x128.py']
iters = 8
model = dict(
    backbone=dict(
        initializer=dict(
            type='MDEQInitializer', hidden_channels=96, target_solver=dict(tol=1e-3))))
optim_wrapper = dict(
    _delete_=True,
    type='SkipNonFiniteOptimWrapper',
    optimizer=dict(type='Adam', lr=5e-2),
    clip_grad=dict(max_norm=1.0))
param_scheduler = []
train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters, val_interval=iters)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=4, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=iters))
custom_hooks = [*_base_.custom_hooks[:2], dict(type='InitializerTrainingHook')]
