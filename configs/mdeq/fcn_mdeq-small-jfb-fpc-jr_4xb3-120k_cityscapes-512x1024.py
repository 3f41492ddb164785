# MDEQ-small on Cityscapes with the recommended segmentation recipe (README, "Which recipe";
# measured on the real frame, not on this data set):
# ./fcn_mdeq-small-jfb-fpc_4xb3-120k_cityscapes-512x1024.py plus Jacobian regularization from the
# middle of the run on, on a random tenth of the iterations (weight 0.625 from iteration 60k,
# +0.625 every 20k), so that evaluation solves reach their tolerance; the first half is the
# -jfb-fpc run.
_base_ = './fcn_mdeq-small-jfb-fpc_4xb3-120k_cityscapes-512x1024.py'
custom_hooks = [
    *_base_.custom_hooks,
    dict(type='JacobianRegHook', weight=0.625, prob=0.1, ramp_step=0.625,
         ramp_interval=_base_.max_iters // 6, start_iter=_base_.max_iters // 2)
]
