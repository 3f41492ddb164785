"""The pinned OpenMMLab stack imports together and sees our registered components."""
import importlib

import pytest
from mmengine.registry import DefaultScope

import mdeq_mm  # noqa: F401


@pytest.mark.parametrize('module', ['mmcv.ops', 'mmseg.models', 'mmpretrain.models'])
def test_mmcv_ops_mmseg_and_mmpretrain_models_import(module):
    importlib.import_module(module)


def test_mmcv_has_compiled_ops():
    from mmcv.ops import nms
    import torch
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.], [20., 20., 30., 30.]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    _, keep = nms(boxes, scores, iou_threshold=0.5)
    assert keep.tolist() == [0, 2]


@pytest.mark.parametrize('scope', ['mmseg', 'mmpretrain'])
@pytest.mark.parametrize('registry,name', [
    ('MODELS', 'MDEQ'),
    ('MODELS', 'MDEQClsNeck'),
    ('HOOKS', 'DEQWarmupHook'),
    ('HOOKS', 'DEQSolverStatsHook'),
    ('HOOKS', 'JacobianRegHook'),
    ('HOOKS', 'DEQEvalBudgetHook'),
    ('HOOKS', 'DEQRandomBudgetHook'),
    ('HOOKS', 'FixedPointCorrectionHook'),
    ('RUNNERS', 'CPUDistributedRunner'),
    ('MODEL_WRAPPERS', 'CPUDistributedDataParallel'),
    ('OPTIM_WRAPPERS', 'SkipNonFiniteOptimWrapper'),
])
def test_components_resolve_under_both_scopes(scope, registry, name):
    registry = getattr(importlib.import_module(f'{scope}.registry'), registry)
    with DefaultScope.overwrite_default_scope(scope):
        assert registry.get(name) is not None, f'{name} not visible from {scope}'
