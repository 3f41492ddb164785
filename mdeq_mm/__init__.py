"""Multiscale Deep Equilibrium Models for mmsegmentation and mmpretrain.

Importing this package registers its components into MMEngine's root registries, so that
``type='MDEQ'`` resolves under both ``default_scope='mmseg'`` and ``'mmpretrain'``; use it from a
config with ``custom_imports = dict(imports=['mdeq_mm'], allow_failed_imports=False)``. Or name
the scope, ``type='mdeq_mm.MDEQ'``: MMEngine then imports :mod:`mdeq_mm.registry` by itself, so
a stock config works from the toolboxes' own tools without ``custom_imports``.

It also lets configs inherit ours as ``mdeq_mm::_base_/...`` and adds our image classifiers to
mmpretrain's ``list_models`` / ``get_model`` (see :mod:`mdeq_mm.model_index`).
"""
from . import engine, models  # noqa: F401  (registration side effects)
from .model_index import register_config_scope, register_mmpretrain_models
from .version import __version__

register_config_scope()
register_mmpretrain_models()

__all__ = ['__version__']
