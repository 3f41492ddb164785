"""Where the toolboxes find our configs and models by name: the ``mdeq_mm::`` config scope and
the model index (``model-index.yml`` and the ``configs/*/metafile.yaml`` it imports).

A wheel ships ``configs/`` and ``model-index.yml`` inside the package, under ``mdeq_mm/.mim/``,
as mmseg and mmpretrain do; a source checkout (or an editable install) has them beside the
package. ``import mdeq_mm`` calls :func:`register_config_scope` and
:func:`register_mmpretrain_models`.

mmseg's ``MMSegInferencer(model=name)`` looks names up only in the metafiles of the package its
``scope`` names, and needs a ``Weights`` entry and a registry of that scope: with
``scope='mdeq_mm'`` neither exists (no weights are published; our modules live in mmengine's root
registries). Pass the config file instead: ``MMSegInferencer(config_file(name), weights=...)``.
"""
import fnmatch
import os.path as osp
from typing import List

MODEL_INDEX = 'model-index.yml'
CLASSIFICATION = 'Image Classification'
PACKAGE_DIR = osp.dirname(osp.abspath(__file__))


def index_root() -> str:
    """The folder holding ``model-index.yml`` and ``configs/``.

    ``mdeq_mm/.mim`` in an installed wheel, else the source checkout the package lies in.

    Raises:
        FileNotFoundError: Neither place has a ``model-index.yml``.

    Examples:
        >>> import os.path as osp
        >>> osp.isfile(osp.join(index_root(), 'configs', '_base_', 'mdeq_runtime.py'))
        True
    """
    candidates = [osp.join(PACKAGE_DIR, '.mim'), osp.dirname(PACKAGE_DIR)]
    for root in candidates:
        if osp.isfile(osp.join(root, MODEL_INDEX)):
            return root
    raise FileNotFoundError(f'no {MODEL_INDEX} in {" or ".join(candidates)}: this copy of '
                            'mdeq_mm was installed without its configs')


def register_config_scope() -> None:
    """Let configs inherit ours as ``mdeq_mm::<folder>/<config>.py``.

    A wheel install does this at Python start-up, before ``mdeq_mm`` is imported; the module
    that does it, ``_mdeq_mm_config_scope``, says how and why. Calling it again does nothing more.

    Examples:
        >>> from mmengine.config import Config
        >>> register_config_scope()
        >>> Config._get_cfg_path('mdeq_mm::_base_/mdeq_runtime.py', 'my_config.py')[1] is None
        True
    """
    import _mdeq_mm_config_scope
    _mdeq_mm_config_scope.install()


def config_file(name: str) -> str:
    """The config file of a model of our model index, by its metafile name.

    For tools that take a config path where mmpretrain's take a name, such as mmseg's
    ``MMSegInferencer(model=config_file(name), weights=checkpoint)``.

    Args:
        name (str): A ``Name`` of a ``configs/*/metafile.yaml`` (case does not matter).

    Raises:
        ValueError: No model of that name (the message lists the names).

    Examples:
        >>> config_file('fcn_mdeq-tiny_1xb2-120it_cityscapes-frame-128x256').endswith(
        ...     'configs/mdeq/fcn_mdeq-tiny_1xb2-120it_cityscapes-frame-128x256.py')
        True
    """
    configs = {model.name.lower(): model.config for model in load_models()}
    if name.lower() not in configs:
        raise ValueError(f'no model named {name!r} in {osp.join(index_root(), MODEL_INDEX)}; '
                         f'the names are: {", ".join(sorted(configs))}')
    return osp.join(index_root(), configs[name.lower()])


def load_models() -> list:
    """The entries of our model index, each completed with its collection's fields."""
    from modelindex.load_model_index import load
    index = load(osp.join(index_root(), MODEL_INDEX))
    index.build_models_with_collections()
    return list(index.models)


def is_classification(model) -> bool:
    """Whether a metafile entry is an mmpretrain image classifier.

    Its ``Results`` name the task; an entry without results (no measured run) is a classifier
    when its ``Architecture`` lists a classification head (``*ClsHead``).

    Args:
        model (modelindex.models.Model.Model): One entry of a loaded model index.
    """
    if model.results:
        return any(result.task == CLASSIFICATION for result in model.results)
    architecture = (model.metadata.architecture if model.metadata else None) or []
    return bool(fnmatch.filter(architecture, '*ClsHead'))


def register_mmpretrain_models() -> List[str]:
    """Add our image classifiers to mmpretrain's model hub; returns their names.

    Afterwards ``mmpretrain.list_models('*mdeq*')``, ``get_model(name)`` and
    ``inference_model(name, ...)`` find them (no weights are published: pass
    ``pretrained=<checkpoint path>``). Segmentation models are not mmpretrain models and are left
    out. Calling it again adds nothing.

    mmpretrain's ``ModelHub.register_model_index`` takes a whole index and refuses names it
    holds already, so the entries are added one by one to the hub's table. ``inference_model``
    and ``list_models(task=...)`` read the task from an entry's results: the hub's copy of an
    entry without measured results gets one result that names the task and holds no metric.

    Examples:
        >>> from mmpretrain.apis import ModelHub
        >>> names = register_mmpretrain_models()
        >>> 'mdeq-tiny_1xb32-300it_digits-16x16' in names
        True
        >>> ModelHub.has('mdeq-tiny_1xb32-300it_digits-16x16')
        True
        >>> ModelHub.has('fcn_mdeq-tiny_1xb2-120it_cityscapes-frame-128x256')
        False
    """
    from mmpretrain.apis import ModelHub
    from modelindex.models.Result import Result

    root = index_root()
    names = []
    for model in load_models():
        if not is_classification(model):
            continue
        name = model.name.lower()
        names.append(name)
        if not ModelHub.has(name):
            model.config = osp.join(root, model.config)
            if not model.results:
                dataset = model.metadata.training_data if model.metadata else None
                model.results = [Result(task=CLASSIFICATION, dataset=dataset, metrics={})]
            ModelHub._models_dict[name] = model
    return names
