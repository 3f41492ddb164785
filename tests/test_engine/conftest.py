"""Fixtures of the engine tests: generated Cityscapes scenes, Runner configs of the tiny MDEQ
segmentor (the model of configs/_base_/models/fcn_mdeq-tiny.py, shrunk), and two test hooks:
one that records what the hooks under test left behind, one that poisons images with NaN."""
import glob
import itertools
import json
import os.path as osp
from typing import Any, Dict, List, Optional, Sequence

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from mdeq_mm.datasets import generate_cityscapes_like
from mdeq_mm.engine.hooks import get_mdeq_backbone

SOLVER_MAX_ITER = 4
CROP = (32, 64)
TINY_MODEL = osp.join(osp.dirname(__file__), '..', '..', 'configs', '_base_', 'models',
                      'fcn_mdeq-tiny.py')
_run_ids = itertools.count()


@pytest.fixture(scope='session')
def data_root(tmp_path_factory) -> str:
    """4 training and 2 validation scenes of 32x64 pixels."""
    root = str(tmp_path_factory.mktemp('cityscapes'))
    return generate_cityscapes_like(root, num_train=4, num_val=2, height=32, width=64)


@pytest.fixture(scope='session')
def solver_max_iter() -> int:
    """The forward and backward step budget of :func:`mdeq_backbone_cfg`."""
    return SOLVER_MAX_ITER


def _mdeq_backbone_cfg(**overrides: Any) -> dict:
    cfg = dict(
        type='MDEQ',
        arch=dict(num_channels=(8, 16), expansion=2),
        norm_cfg=dict(type='BN'),
        forward_solver=dict(type='broyden', max_iter=SOLVER_MAX_ITER, tol=1e-6),
        backward=dict(type='implicit', solver='broyden', max_iter=SOLVER_MAX_ITER),
        unrolled_layers=2)
    cfg.update(overrides)
    return cfg


@pytest.fixture(scope='session')
def mdeq_backbone_cfg():
    """``mdeq_backbone_cfg(**overrides)``: a 2-branch MDEQ of 8-16 channels, BN outside f,
    ``SOLVER_MAX_ITER`` Broyden steps forward and backward, 2 unrolled layers."""
    return _mdeq_backbone_cfg


@pytest.fixture(scope='session')
def resnet_backbone_cfg():
    """``resnet_backbone_cfg()``: a 2-stage ResNetV1c of 8-16 channels (no MDEQ anywhere)."""
    return lambda: dict(
        type='ResNetV1c',
        depth=18,
        base_channels=8,
        stem_channels=8,
        num_stages=2,
        strides=(1, 2),
        dilations=(1, 1),
        out_indices=(0, 1),
        norm_cfg=dict(type='BN'))


def _runner_cfg(data_root: str,
                work_dir: str,
                custom_hooks: Sequence[dict] = (),
                max_iters: int = 6,
                val_interval: Optional[int] = None,
                logger_interval: int = 1,
                checkpoint_interval: Optional[int] = None,
                backbone: Optional[dict] = None,
                in_channels: Sequence[int] = (8, 16),
                load_from: Optional[str] = None,
                resume: bool = False) -> Config:
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations'),
        dict(type='PackSegInputs')
    ]

    def dataloader(split: str, batch_size: int, sampler: str) -> dict:
        return dict(
            batch_size=batch_size,
            num_workers=0,
            persistent_workers=False,
            sampler=dict(type=sampler, shuffle=False),
            dataset=dict(
                type='CityscapesDataset',
                data_root=data_root,
                data_prefix=dict(
                    img_path=f'leftImg8bit/{split}', seg_map_path=f'gtFine/{split}'),
                pipeline=pipeline))

    tiny = Config.fromfile(TINY_MODEL)
    tiny.merge_from_dict({
        'model.data_preprocessor.size': CROP,
        'model.decode_head.in_channels': list(in_channels),
        'model.decode_head.in_index': tuple(range(len(in_channels))),
        'model.decode_head.channels': sum(in_channels),
    })
    model = tiny.model
    model.backbone = backbone or _mdeq_backbone_cfg()
    default_hooks = dict(
        timer=dict(type='IterTimerHook'),
        logger=dict(type='LoggerHook', interval=logger_interval, log_metric_by_epoch=False),
        param_scheduler=dict(type='ParamSchedulerHook'))
    if checkpoint_interval:
        default_hooks['checkpoint'] = dict(
            type='CheckpointHook', by_epoch=False, interval=checkpoint_interval)
    return Config(
        dict(
            default_scope='mmseg',
            experiment_name=f'hooks_{osp.basename(work_dir)}_{next(_run_ids)}',
            work_dir=work_dir,
            model=model,
            train_dataloader=dataloader('train', 2, 'InfiniteSampler'),
            val_dataloader=dataloader('val', 1, 'DefaultSampler'),
            val_evaluator=dict(type='IoUMetric', iou_metrics=['mIoU']),
            optim_wrapper=dict(
                type='OptimWrapper', optimizer=dict(type='SGD', lr=0.01, momentum=0.9)),
            train_cfg=dict(
                type='IterBasedTrainLoop',
                max_iters=max_iters,
                val_interval=val_interval or max_iters + 1),
            val_cfg=dict(type='ValLoop'),
            default_hooks=default_hooks,
            custom_hooks=[*custom_hooks, dict(type='HookTestRecorder')],
            env_cfg=dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo')),
            visualizer=dict(
                type='SegLocalVisualizer', vis_backends=[dict(type='LocalVisBackend')]),
            log_processor=dict(by_epoch=False),
            randomness=dict(seed=0),
            load_from=load_from,
            resume=resume))


@pytest.fixture(scope='session')
def runner_cfg():
    """``runner_cfg(data_root, work_dir, custom_hooks=(), ...)``: a complete Runner config,
    EncoderDecoder(backbone, FCNHead) on CityscapesDataset, with :class:`HookTestRecorder` after
    the hooks under test. The backbone defaults to :func:`mdeq_backbone_cfg`'s."""
    return _runner_cfg


@HOOKS.register_module()
class HookTestRecorder(Hook):
    """Records, after the hooks under test, what the backbone and the MessageHub hold."""

    priority = 'LOWEST'

    def __init__(self) -> None:
        self.train: List[Dict[str, Any]] = []
        self.val: List[Dict[str, Any]] = []

    def before_run(self, runner) -> None:
        self.backbone = get_mdeq_backbone(runner.model, 'HookTestRecorder')

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        fwd = self.backbone.last_forward_stats
        bwd = self.backbone.last_backward_stats
        jac = self.backbone.jacobian_loss
        scalars = runner.message_hub.log_scalars
        self.train.append(
            dict(
                iter=runner.iter,
                mode=self.backbone.deq_mode,
                probes_after=self.backbone.jacobian_probes,
                outputs={key: float(torch.as_tensor(value).detach())
                         for key, value in outputs.items()},
                jacobian_loss=None if jac is None else float(jac.detach()),
                fwd_steps=None if fwd is None else fwd.steps.tolist(),
                fwd_rel_res=None if fwd is None else fwd.rel_res.tolist(),
                bwd_steps=None if bwd is None else bwd.steps.tolist(),
                bwd_rel_res=None if bwd is None else bwd.rel_res.tolist(),
                hub={key: buf.current()
                     for key, buf in scalars.items() if key.startswith('train/')}))

    def after_val_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        fwd = self.backbone.last_forward_stats
        self.val.append(
            dict(
                train_iter=runner.iter,
                eval_max_iter=self.backbone.eval_max_iter,
                fwd_steps=fwd.steps.tolist(),
                fwd_rel_res=fwd.rel_res.tolist(),
                failed_flags=[sample.metainfo.get('deq_failed') for sample in outputs]))


@HOOKS.register_module()
class NaNImageHook(Hook):
    """Makes the last image of the batch NaN at the given training iterations and validation
    batches, after the dataloader and before the data preprocessor."""

    priority = 'HIGHEST'

    def __init__(self, train_iters: Sequence[int] = (), val_batches: Sequence[int] = ()) -> None:
        self.train_iters = train_iters
        self.val_batches = val_batches

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        if runner.iter in self.train_iters:
            self._poison(data_batch)

    def before_val_iter(self, runner, batch_idx, data_batch=None) -> None:
        if batch_idx in self.val_batches:
            self._poison(data_batch)

    @staticmethod
    def _poison(data_batch) -> None:
        data_batch['inputs'][-1] = torch.full(data_batch['inputs'][-1].shape, float('nan'))


@pytest.fixture(scope='session')
def recorder_of():
    """``recorder_of(runner)``: the run's :class:`HookTestRecorder`."""
    return lambda runner: next(hook for hook in runner.hooks
                               if isinstance(hook, HookTestRecorder))


def _read_scalars(work_dir: str) -> List[Dict[str, Any]]:
    (path, ) = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    with open(path) as file:
        return [json.loads(line) for line in file]


def _read_log(work_dir: str) -> str:
    (path, ) = glob.glob(osp.join(work_dir, '*', '*.log'))
    with open(path) as file:
        return file.read()


@pytest.fixture(scope='session')
def read_scalars():
    """``read_scalars(work_dir)``: all lines of the run's ``vis_data/scalars.json``."""
    return _read_scalars


@pytest.fixture(scope='session')
def read_log():
    """``read_log(work_dir)``: the text of the run's log file."""
    return _read_log
