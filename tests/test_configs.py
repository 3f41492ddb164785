"""The shipped configs: each one loads and builds its model, the bases keep to their layer, and the
metafiles index every config."""
import functools
from pathlib import Path

import pytest
import yaml
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope

DEQ_HOOKS = ['DEQWarmupHook', 'DEQSolverStatsHook']
RECIPE_VARIANTS = sorted((Path(__file__).parents[1] / 'configs' / 'mdeq').glob('*-fpc_*.py'))
REGULARIZED_VARIANTS = sorted(
    (Path(__file__).parents[1] / 'configs' / 'mdeq').glob('*-jfb-fpc-jr_*.py'))


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


# Stock configs of the toolboxes with only the backbone swapped, and what else they may change.
STOCK_DERIVED = {
    'mdeq/fcn_mdeq-small_4xb2-40k_cityscapes-512x1024.py':
    'mmseg::hrnet/fcn_hr18_4xb2-40k_cityscapes-512x1024.py',
    'mdeq/pspnet_mdeq-small_4xb2-40k_cityscapes-512x1024.py':
    'mmseg::pspnet/pspnet_r50-d8_4xb2-40k_cityscapes-512x1024.py',
    'mdeq/mdeq-small-gap_8xb32_in1k.py': 'mmpretrain::resnet/resnet18_8xb32_in1k.py',
}
SWAPPABLE = {'model.pretrained', 'model.backbone'} | {
    f'model.{head}.{key}' for head in ('decode_head', 'auxiliary_head', 'head')
    for key in ('in_channels', 'in_index', 'channels')
}


def changed_keys(ours, base, prefix=''):
    """Dotted keys whose values differ between two config dicts (a whole subtree counts once
    where one side is not a dict)."""
    if not (isinstance(ours, dict) and isinstance(base, dict)):
        return set() if ours == base else {prefix}
    changed = set()
    for key in set(ours) | set(base):
        changed |= changed_keys(ours.get(key), base.get(key), f'{prefix}{key}.')
    return {key.rstrip('.') for key in changed}


@pytest.mark.parametrize('name,base', sorted(STOCK_DERIVED.items()))
def test_stock_derived_configs_change_only_the_backbone_and_the_head_channels(
        name, base, config_path, tmp_path):
    text = open(config_path(name)).read()
    assert f'_base_ = [{base!r}]' in text
    assert 'custom_imports =' not in text and 'custom_hooks =' not in text
    ours = load(config_path(name)).to_dict()
    stock_file = tmp_path / 'stock.py'
    stock_file.write_text(f'_base_ = [{base!r}]\n')
    stock = Config.fromfile(str(stock_file)).to_dict()
    unexpected = {key for key in changed_keys(ours, stock)
                  if not any(key == ok or key.startswith(f'{ok}.') for ok in SWAPPABLE)}
    assert not unexpected
    assert ours['model']['backbone']['type'] == 'mdeq_mm.MDEQ'


def _recipe_base(cfg: Config) -> Config:
    """The config a recipe variant (``-jfb-fpc``/``-fpc``) inherits from."""
    base = cfg.filename.replace('-jfb-fpc_', '_').replace('-fpc_', '_')
    return load(base)


@pytest.mark.parametrize('variant', [str(p) for p in RECIPE_VARIANTS],
                         ids=[p.stem for p in RECIPE_VARIANTS])
def test_recipe_variants_change_only_the_training_recipe(variant):
    name = variant.rsplit('/', 1)[-1]
    cfg, base = load(variant), _recipe_base(load(variant))
    hooks = {hook.type: hook for hook in cfg.custom_hooks}
    assert hooks['DEQWarmupHook'] == dict(type='DEQWarmupHook', warmup_iters=0)
    types = [h.type for h in cfg.custom_hooks]
    assert types[:len(base.custom_hooks)] == [h.type for h in base.custom_hooks]
    added = types[len(base.custom_hooks):]
    # a run of a few hundred iterations also validates a moving average of the weights
    short = cfg.train_cfg.get('max_iters', float('inf')) <= 1000
    allowed = [['FixedPointCorrectionHook']]
    if short:
        allowed.append(['FixedPointCorrectionHook', 'EMAHook'])
    assert added in allowed
    correction = hooks['FixedPointCorrectionHook']
    budget = base.model.backbone.forward_solver.max_iter
    if '-jfb-fpc_' in name:
        # Jacobian-free, Anderson, half the forward budget in training, the full one in evaluation
        assert cfg.model.backbone.backward == dict(type='jfb')
        assert cfg.model.backbone.forward_solver.type == 'anderson'
        assert cfg.model.backbone.forward_solver.max_iter == (budget + 1) // 2
        assert cfg.model.backbone.eval_max_iter == budget
        assert correction.n_states == 1
    else:
        assert cfg.model.backbone.backward == dict(type='phantom', k=5, tau=0.6)
        assert cfg.model.backbone.forward_solver.max_iter == budget
        assert correction.n_states == 2
    # everything else is the base's: the model outside the solver, data, schedule
    for key in ('train_dataloader', 'optim_wrapper', 'param_scheduler', 'train_cfg'):
        assert cfg[key] == base[key], key
    strip = ('backward', 'forward_solver', 'eval_max_iter')
    assert ({k: v for k, v in cfg.model.backbone.items() if k not in strip} ==
            {k: v for k, v in base.model.backbone.items() if k not in strip})
    assert cfg.model.get('decode_head') == base.model.get('decode_head')


@pytest.mark.parametrize('variant', [str(p) for p in REGULARIZED_VARIANTS],
                         ids=[p.stem for p in REGULARIZED_VARIANTS])
def test_regularized_recipe_variants_add_jacobian_regularization_from_the_middle(variant):
    cfg = load(variant)
    base = load(variant.replace('-jfb-fpc-jr_', '-jfb-fpc_'))
    *hooks, regularization = cfg.custom_hooks
    assert hooks == base.custom_hooks
    # the first half of the run is the -jfb-fpc run; the ramp has three steps in the second
    max_iters = cfg.train_cfg.max_iters
    assert regularization == dict(type='JacobianRegHook', weight=0.625, prob=0.1,
                                  ramp_step=0.625, ramp_interval=max_iters // 6,
                                  start_iter=max_iters // 2)
    for key in ('model', 'train_dataloader', 'optim_wrapper', 'param_scheduler', 'train_cfg'):
        assert cfg[key] == base[key], key
