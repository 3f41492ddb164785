"""Checkpoints of our seg and cls configs load safely and resume training exactly."""
import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

pytestmark = pytest.mark.slow
SEG_ITERS = 4
# the seg run switches from unrolled to implicit training half-way, where the split run resumes
SEG_EXTRA = f"""
param_scheduler = [dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end={SEG_ITERS},
                        by_epoch=False)]
default_hooks = dict(checkpoint=dict(type='CheckpointHook', by_epoch=False,
                                     interval={SEG_ITERS // 2}))
custom_hooks = [dict(type='DEQWarmupHook', warmup_iters={SEG_ITERS // 2}),
                dict(type='DEQSolverStatsHook')]
"""


def seg_runner(seg_config, tmp_path, work_dir, max_iters, **options):
    config = seg_config(tmp_path / f'seg_{max_iters}.py', max_iters, SEG_EXTRA)
    cfg = Config.fromfile(config)
    cfg.merge_from_dict(dict(work_dir=str(work_dir), **options))
    return Runner.from_cfg(cfg)


def cls_runner(config, data_root, work_dir, max_epochs, **options):
    """``config``, our ImageNet MDEQ-small config (SGD Nesterov, cosine), shrunk to a tiny
    model."""
    cfg = Config.fromfile(config)
    pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]

    def loader(split, shuffle):
        return dict(batch_size=8, num_workers=0, persistent_workers=False,
                    sampler=dict(type='DefaultSampler', shuffle=shuffle),
                    dataset=dict(_delete_=True, type='CustomDataset', data_root=data_root,
                                 data_prefix=split, pipeline=pipeline))

    cfg.merge_from_dict(dict(
        work_dir=str(work_dir),
        model=dict(
            backbone=dict(arch=dict(_delete_=True, num_channels=(8, 16), expansion=2),
                          forward_solver=dict(max_iter=6), backward=dict(max_iter=6)),
            neck=dict(in_channels=(8, 16), head_channels=(4, 8), final_channels=32),
            head=dict(num_classes=3, in_channels=32, topk=(1, ))),
        train_dataloader=loader('train', True),
        val_dataloader=loader('val', False),
        test_dataloader=loader('val', False),
        val_evaluator=dict(type='Accuracy', topk=(1, )),
        test_evaluator=dict(type='Accuracy', topk=(1, )),
        train_cfg=dict(max_epochs=max_epochs, val_interval=2),
        randomness=dict(seed=0),
        **options))
    # unrolled in the first epoch (6 iterations), implicit in the second
    cfg.custom_hooks = [dict(type='DEQWarmupHook', warmup_iters=6), dict(type='DEQSolverStatsHook')]
    return Runner.from_cfg(cfg)


def assert_same_weights(model, reference):
    state = model.state_dict()
    for name, value in reference.state_dict().items():
        assert torch.equal(state[name], value), name


@pytest.mark.parametrize('task', ['seg', 'cls'])
def test_resume_and_load_from_reproduce_the_uninterrupted_run(task, tmp_path, seg_config,
                                                              cls_data_root, config_path):

    def build(work_dir, halves, **options):
        """A runner of ``halves`` halves of the schedule (iterations for seg, epochs for cls)."""
        if task == 'seg':
            return seg_runner(seg_config, tmp_path, work_dir, SEG_ITERS * halves // 2,
                              **options)
        return cls_runner(config_path('mdeq/mdeq-small_4xb32_in1k.py'), cls_data_root, work_dir,
                          halves, **options)

    straight = build(tmp_path / 'straight', 2)
    straight.train()

    build(tmp_path / 'split', 1).train()
    resumed = build(tmp_path / 'split', 2, resume=True)
    resumed.train()
    assert resumed.iter == straight.iter
    assert_same_weights(resumed.model, straight.model)

    last = {'seg': f'iter_{SEG_ITERS}.pth', 'cls': 'epoch_2.pth'}[task]
    loaded = build(tmp_path / 'loaded', 2, load_from=str(tmp_path / 'straight' / last))
    loaded.load_or_resume()
    assert_same_weights(loaded.model, straight.model)
