"""Let mmengine load ``mdeq_mm::`` config paths, even before anything imports mdeq_mm.

A config may inherit ours as ``_base_ = ['mdeq_mm::_base_/mdeq_runtime.py']`` or
``'mdeq_mm::mdeq/<config>.py'``. mmengine 0.10.7 has two obstacles:

1. It refuses a ``pkg::`` path unless ``pkg`` is in ``mmengine.config.utils.MODULE2PACKAGE``, a
   fixed table of OpenMMLab projects.
2. It tags every top-level dict with a ``type`` in such a base with ``_scope_='pkg'``, so the
   model, datasets and schedulers are built in the ``pkg`` registry scope. Our configs are mmseg
   and mmpretrain configs (``default_scope`` is theirs; our modules are in mmengine's root
   registries): in a ``mdeq_mm`` scope, ``ImageClassifier`` and ``EncoderDecoder`` are not found.

:func:`install` therefore (1) adds ``'mdeq_mm'`` to that table and (2) wraps
``Config._get_cfg_path`` so that a ``mdeq_mm::`` path is resolved to our config file with no
scope: it then loads exactly as the file would by its own path (its ``mmseg::`` /
``mmpretrain::`` bases keep their scopes). The file is looked up in the installed package's
``.mim/configs`` (a wheel), else in the ``configs/`` beside the package (a checkout or an editable
install). Other ``pkg::`` paths go to mmengine unchanged.

A wheel installs ``mdeq_mm-config-scope.pth`` beside this module; Python runs its one line at
start-up, which calls :func:`install`. That only adds an import hook: mmengine is not imported at
start-up. When a program first imports ``mmengine.config.config`` (any config, any stock tool),
the hook applies (1) and (2) right after that module has run. ``import mdeq_mm`` calls
:func:`install` too (installs without the ``.pth`` file: editable, a checkout on ``PYTHONPATH``).

This module uses only the standard library and lives outside the ``mdeq_mm`` package on purpose:
importing ``mdeq_mm`` imports torch and the toolboxes, which no Python start-up should pay for.

Examples:
    >>> import _mdeq_mm_config_scope
    >>> _mdeq_mm_config_scope.install()
    >>> from mmengine.config import Config
    >>> path, scope = Config._get_cfg_path('mdeq_mm::_base_/mdeq_runtime.py', 'my_config.py')
    >>> path.endswith('mdeq_runtime.py'), scope
    (True, None)
"""
import importlib.util
import os.path as osp
import sys

SCOPE = 'mdeq_mm'  # the name before '::' in a config path, and our module name
DISTRIBUTION = 'mdeq_mm'  # the pip distribution, as mmengine's table maps it
HOOKED_MODULE = 'mmengine.config.config'


def config_root_candidates() -> list:
    """Where ``configs/`` may be, most specific first, located without importing ``mdeq_mm``."""
    spec = importlib.util.find_spec(SCOPE)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f'{SCOPE} is not installed: cannot resolve {SCOPE}:: configs')
    package_dir = osp.dirname(spec.origin)
    return [osp.join(package_dir, '.mim'), osp.dirname(package_dir)]


def resolve(cfg_path: str) -> str:
    """The file of a ``mdeq_mm::<folder>/<name>[.py]`` config path.

    Raises:
        FileNotFoundError: No such config in the installed package (the message names the places
            looked in).
    """
    relative = cfg_path.partition('::')[2]
    if not osp.splitext(relative)[1]:
        relative += '.py'
    tried = []
    for root in config_root_candidates():
        candidate = osp.join(root, 'configs', relative)
        if osp.isfile(candidate):
            return candidate
        tried.append(candidate)
    raise FileNotFoundError(f'{cfg_path}: no such config ({" nor ".join(tried)} exists)')


def patch_config(config_module) -> None:
    """Apply (1) and (2) of the module docstring to a loaded ``mmengine.config.config``."""
    sys.modules['mmengine.config.utils'].MODULE2PACKAGE.setdefault(SCOPE, DISTRIBUTION)
    config_cls = config_module.Config
    original = config_cls._get_cfg_path
    if getattr(original, 'resolves_mdeq_mm', False):
        return

    def get_cfg_path(cfg_path: str, filename: str):
        if cfg_path.startswith(f'{SCOPE}::'):
            return resolve(cfg_path), None
        return original(cfg_path, filename)

    get_cfg_path.resolves_mdeq_mm = True
    get_cfg_path.__wrapped__ = original
    config_cls._get_cfg_path = staticmethod(get_cfg_path)


class PatchingLoader:
    """Runs the real loader of ``mmengine.config.config``, then :func:`patch_config`.

    Args:
        loader: The loader the import system found for the module.
    """

    def __init__(self, loader) -> None:
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        self.loader.exec_module(module)
        patch_config(module)

    def __getattr__(self, name: str):
        # get_source, get_filename, ...: what tracebacks and inspect ask the real loader
        return getattr(self.loader, name)


class ConfigScopeFinder:
    """A ``sys.meta_path`` entry that only answers for ``mmengine.config.config``.

    It asks the other finders for the module's spec and wraps the spec's loader in a
    :class:`PatchingLoader`; every other import is left to the other finders.
    """

    def find_spec(self, fullname: str, path=None, target=None):
        if fullname != HOOKED_MODULE:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, 'find_spec'):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if hasattr(spec.loader, 'exec_module'):
                    spec.loader = PatchingLoader(spec.loader)
                return spec
        return None


def install() -> None:
    """Patch mmengine's config loading now if it is loaded, else as soon as it is.

    Calling it again does nothing more.
    """
    loaded = sys.modules.get(HOOKED_MODULE)
    if loaded is not None:
        patch_config(loaded)
    if not any(type(finder).__name__ == ConfigScopeFinder.__name__ for finder in sys.meta_path):
        sys.meta_path.insert(0, ConfigScopeFinder())
