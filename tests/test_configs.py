"""The shipped configs: each one loads and builds its model, the bases keep to their layer, and the
metafiles index every config."""
import functools

import pytest
import yaml
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope

DEQ_HOOKS = ['DEQWarmupHook', 'DEQSolverStatsHook']


@functools.lru_cache(maxsize=None)
def load(path: str) -> Config:
    return Config.fromfile(path)


def test_every_config_loads_with_a_scope_and_a_model(config_file):
    cfg = load(config_file)
    assert cfg.default_scope in ('mmseg', 'mmpretrain')
    assert cfg.model.type in ('EncoderDecoder', 'ImageClassifier')


def test_every_mdeq_config_trains_with_the_deq_hooks_of_the_runtime_base(config_file):
    cfg = load(config_file)
    if cfg.model.backbone.type != 'MDEQ':
        pytest.skip('not an MDEQ config')
    assert [hook.type for hook in cfg.custom_hooks][:2] == DEQ_HOOKS
    assert cfg.custom_imports.imports == ['mdeq_mm']
    assert cfg.optim_wrapper.type == 'SkipNonFiniteOptimWrapper'


@pytest.mark.slow
def test_every_config_builds_its_model(config_file):
    cfg = load(config_file)
    init_default_scope(cfg.default_scope)
    assert sum(p.numel() for p in MODELS.build(cfg.model).parameters()) > 0


def test_schedules_hold_no_custom_hooks_and_no_model(repo):
    schedules = sorted((repo / 'configs' / '_base_' / 'schedules').glob('*.py'))
    assert schedules
    for schedule in schedules:
        cfg = Config.fromfile(str(schedule))
        assert 'custom_hooks' not in cfg and 'model' not in cfg, schedule.name
        assert {'optim_wrapper', 'param_scheduler', 'train_cfg'} <= set(cfg.keys()), schedule.name


def test_the_metafiles_index_every_config_and_only_existing_ones(repo):
    indexed = set()
    for metafile in (repo / 'configs').glob('*/metafile.yaml'):
        for model in yaml.safe_load(metafile.read_text())['Models']:
            config = repo / model['Config']
            assert config.exists(), model['Config']
            assert config.stem == model['Name']
            indexed.add(config)
    assert indexed == set((repo / 'configs').glob('[!_]*/*.py'))
