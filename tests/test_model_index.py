"""Our configs and models found by name: ``mdeq_mm::`` config paths and the model index."""
import os.path as osp

import pytest
import yaml
from mmengine.config import Config
from mmpretrain.apis import ModelHub

import mdeq_mm  # noqa: F401  (registers the config scope and the model hub entries)
from mdeq_mm.model_index import (config_file, index_root, load_models,
                                 register_mmpretrain_models)

from .conftest import CONFIGS, REPO

DIGITS = 'mdeq-tiny_1xb32-300it_digits-16x16'
FRAME_SEG = 'fcn_mdeq-tiny_1xb2-120it_cityscapes-frame-128x256'


def test_model_index_imports_every_metafile():
    with open(REPO / 'model-index.yml', encoding='utf-8') as f:
        imported = set(yaml.safe_load(f)['Import'])
    assert imported == {str(p.relative_to(REPO)) for p in CONFIGS.glob('*/metafile.yaml')}


def test_the_model_index_reaches_every_shipped_config():
    indexed = {osp.join(index_root(), model.config) for model in load_models()}
    assert indexed == {str(path) for path in CONFIGS.glob('[!_]*/*.py')}


def test_the_model_hub_holds_our_classifiers_and_no_segmentor():
    names = register_mmpretrain_models()
    assert DIGITS in names and 'mdeq-small_4xb32_in1k' in names
    assert all(ModelHub.has(name) for name in names)
    assert not any(name.startswith('fcn_') for name in names)
    assert not ModelHub.has(FRAME_SEG)
    # mmpretrain's inference_model picks the inferencer by the task of an entry's results
    assert [result.task for result in ModelHub.get('mdeq-small_4xb32_in1k').results] == [
        'Image Classification']
    # a second registration (a second import) adds nothing and raises nothing
    assert register_mmpretrain_models() == names


def test_config_file_finds_a_segmentor_by_name_and_names_the_unknown():
    assert config_file(FRAME_SEG.upper()) == osp.join(index_root(), 'configs', 'mdeq',
                                                      f'{FRAME_SEG}.py')
    with pytest.raises(ValueError, match="'fcn_mdeq-huge'.*" + DIGITS):
        config_file('fcn_mdeq-huge')


def test_a_mdeq_mm_base_loads_as_the_config_file_itself(tmp_path):
    """No ``_scope_='mdeq_mm'`` on the model: it builds in the config's own default scope."""
    user = tmp_path / 'user.py'
    user.write_text(f"_base_ = ['mdeq_mm::mdeq/{DIGITS}.py']\n")
    inherited = Config.fromfile(str(user))
    direct = Config.fromfile(str(CONFIGS / 'mdeq' / f'{DIGITS}.py'))
    assert inherited.model.to_dict() == direct.model.to_dict()
    assert '_scope_' not in inherited.model
    assert inherited.default_scope == 'mmpretrain'


def test_an_unknown_mdeq_mm_config_is_named_in_the_error(tmp_path):
    user = tmp_path / 'user.py'
    user.write_text("_base_ = ['mdeq_mm::mdeq/no_such_config.py']\n")
    with pytest.raises(FileNotFoundError, match='mdeq_mm::mdeq/no_such_config.py'):
        Config.fromfile(str(user))
