"""Install mdeq_mm: Multiscale Deep Equilibrium Models for OpenMMLab."""
import os
import os.path as osp
import re

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = osp.dirname(osp.abspath(__file__))
# What a wheel ships under mdeq_mm/.mim/, the folder mmengine reads `mdeq_mm::` configs from
MIM_FILES = ['model-index.yml']
MIM_TREES = {'configs': ('.py', '.yaml')}  # folder: the file endings copied from it
# Installed into site-packages: Python runs its line at start-up (see _mdeq_mm_config_scope.py)
CONFIG_SCOPE_MODULE = '_mdeq_mm_config_scope'
CONFIG_SCOPE_PTH = 'mdeq_mm-config-scope.pth'


def read_version() -> str:
    with open(osp.join(HERE, 'mdeq_mm', 'version.py'), encoding='utf-8') as f:
        return re.search(r"__version__ = '([^']+)'", f.read()).group(1)


def read_requirements(name: str) -> list:
    """Requirement lines of ``requirements/{name}.txt`` without comments or blank lines."""
    with open(osp.join(HERE, 'requirements', f'{name}.txt'), encoding='utf-8') as f:
        lines = (line.split('#', 1)[0].strip() for line in f)
        return [line for line in lines if line]


class BuildWithConfigs(build_py):
    """build_py that also copies MIM_FILES and MIM_TREES under mdeq_mm/.mim and adds the
    start-up .pth file.

    Editable installs get neither: ``mdeq_mm`` finds the configs in the checkout, and
    ``mdeq_mm::`` paths work there once ``mdeq_mm`` is imported (a config's ``custom_imports``
    come too late: its bases are read first).
    """

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        mim_dir = osp.join(self.build_lib, 'mdeq_mm', '.mim')
        files = list(MIM_FILES)
        for tree, endings in MIM_TREES.items():
            for folder, _, names in os.walk(osp.join(HERE, tree)):
                files += [osp.relpath(osp.join(folder, name), HERE) for name in sorted(names)
                          if name.endswith(endings)]
        for name in files:
            target = osp.join(mim_dir, name)
            self.mkpath(osp.dirname(target))
            self.copy_file(osp.join(HERE, name), target)
        with open(osp.join(self.build_lib, CONFIG_SCOPE_PTH), 'w', encoding='utf-8') as f:
            f.write(f'import {CONFIG_SCOPE_MODULE}; {CONFIG_SCOPE_MODULE}.install()\n')


setup(
    name='mdeq_mm',
    version=read_version(),
    description='Multiscale Deep Equilibrium Models (MDEQ) for '
    'mmsegmentation and mmpretrain',
    long_description=open(osp.join(HERE, 'README.md'), encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.9',
    packages=find_packages(include=['mdeq_mm', 'mdeq_mm.*']),
    py_modules=[CONFIG_SCOPE_MODULE],
    cmdclass={'build_py': BuildWithConfigs},
    # ranges only: the exact tested set (requirements/pinned.txt) is a constraints file
    install_requires=read_requirements('runtime'),
    extras_require={
        'tests': read_requirements('tests'),
        'optional': read_requirements('optional'),
        'mim': read_requirements('mminstall'),
    },
    zip_safe=False,
)
