"""Install mdeq_mm: Multiscale Deep Equilibrium Models for OpenMMLab."""
import os.path as osp
import re

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


def read_version() -> str:
    with open(osp.join(HERE, 'mdeq_mm', 'version.py'), encoding='utf-8') as f:
        return re.search(r"__version__ = '([^']+)'", f.read()).group(1)


def read_requirements(name: str) -> list:
    """Requirement lines of ``requirements/{name}.txt`` without comments or blank lines."""
    with open(osp.join(HERE, 'requirements', f'{name}.txt'), encoding='utf-8') as f:
        lines = (line.split('#', 1)[0].strip() for line in f)
        return [line for line in lines if line]


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
    # ranges only: the exact tested set (requirements/pinned.txt) is a constraints file
    install_requires=read_requirements('runtime'),
    extras_require={
        'tests': read_requirements('tests'),
        'optional': read_requirements('optional'),
        'mim': read_requirements('mminstall'),
    },
    zip_safe=False,
)
