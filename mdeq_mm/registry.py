"""MDEQ's registry nodes under the ``mdeq_mm`` scope, children of MMEngine's root registries.

They let a config name our components with the scope, e.g. ``type='mdeq_mm.MDEQ'``, from any
toolbox's own tools and without ``custom_imports``: for a scoped key, MMEngine's
``Registry.get`` imports ``mdeq_mm.registry``, which imports ``mdeq_mm`` (registering
everything), and then looks the key up in this node and its parent. The components themselves
are registered in the root registries, so that ``type='MDEQ'`` (with ``custom_imports``) also
resolves under ``default_scope='mmseg'`` and ``'mmpretrain'`` alike.

Example:
    >>> from mmengine.registry import MODELS
    >>> from mdeq_mm.models import MDEQ
    >>> MODELS.get('mdeq_mm.MDEQ') is MDEQ
    True
"""
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import RUNNERS as MMENGINE_RUNNERS
from mmengine.registry import Registry

SCOPE = 'mdeq_mm'

MODELS = Registry('model', parent=MMENGINE_MODELS, scope=SCOPE, locations=['mdeq_mm.models'])
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope=SCOPE, locations=['mdeq_mm.engine.hooks'])
RUNNERS = Registry('runner', parent=MMENGINE_RUNNERS, scope=SCOPE,
                   locations=['mdeq_mm.engine.distributed'])
MODEL_WRAPPERS = Registry('model_wrapper', parent=MMENGINE_MODEL_WRAPPERS, scope=SCOPE,
                          locations=['mdeq_mm.engine.distributed'])
OPTIM_WRAPPERS = Registry('optim_wrapper', parent=MMENGINE_OPTIM_WRAPPERS, scope=SCOPE,
                          locations=['mdeq_mm.engine.optim_wrapper'])

__all__ = ['MODELS', 'HOOKS', 'RUNNERS', 'MODEL_WRAPPERS', 'OPTIM_WRAPPERS']
