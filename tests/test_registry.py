"""``type='mdeq_mm.X'`` builds from a toolbox's own Runner without importing mdeq_mm first, and
``type='X'`` with ``custom_imports`` still does."""
import sys
import textwrap

import pytest

# A Runner of the toolbox's scope whose config file names our backbone and a hook; it prints
# whether mdeq_mm was imported before the config was read and what was built.
BUILD = textwrap.dedent("""
    import sys
    from mmengine.config import Config
    from mmengine.runner import Runner

    scope, prefix, work_dir = sys.argv[1:]
    if scope == 'mmseg':
        model = dict(
            type='EncoderDecoder',
            data_preprocessor=dict(type='SegDataPreProcessor'),
            backbone=dict(type=prefix + 'MDEQ', arch=dict(num_channels=(8, 16), expansion=2)),
            decode_head=dict(type='FCNHead', in_channels=16, channels=8, num_classes=2))
    else:
        model = dict(
            type='ImageClassifier',
            backbone=dict(type=prefix + 'MDEQ', arch=dict(num_channels=(8, 16), expansion=2)),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=2, in_channels=16))
    cfg = dict(default_scope=scope, work_dir=work_dir, model=model,
               custom_hooks=[dict(type=prefix + 'DEQWarmupHook', warmup_iters=1)])
    if not prefix:
        cfg['custom_imports'] = dict(imports=['mdeq_mm'], allow_failed_imports=False)
    print('imported before build:', 'mdeq_mm' in sys.modules)
    Config(cfg).dump(work_dir + '.py')
    runner = Runner.from_cfg(Config.fromfile(work_dir + '.py'))
    print('backbone:', type(runner.model.backbone).__module__)
    print('hooks:', [type(hook).__name__ for hook in runner.hooks])
""")


@pytest.mark.slow
@pytest.mark.parametrize('scope', ['mmseg', 'mmpretrain'])
@pytest.mark.parametrize('prefix', ['mdeq_mm.', ''])
def test_a_toolbox_runner_builds_mdeq_components_by_scoped_or_plain_name(
        scope, prefix, tmp_path, run_tool):
    script = tmp_path / 'build.py'
    script.write_text(BUILD)
    output = run_tool([str(script), scope, prefix, str(tmp_path / 'work')])
    assert 'imported before build: False' in output
    assert 'backbone: mdeq_mm.models.backbones.mdeq' in output
    assert 'DEQWarmupHook' in output


def test_the_scoped_registry_nodes_hang_under_mmengines_roots():
    from mmengine.registry import HOOKS, MODELS

    from mdeq_mm import registry
    assert registry.MODELS.parent is MODELS and registry.HOOKS.parent is HOOKS
    assert MODELS.get('mdeq_mm.MDEQClsNeck').__name__ == 'MDEQClsNeck'
    assert 'mdeq_mm' in sys.modules
