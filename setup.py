"""Install mdeq_mm: Multiscale Deep Equilibrium Models for OpenMMLab."""
import os.path as osp
import re

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


def read_version() -> str:
    with open(osp.join(HERE, 'mdeq_mm', 'version.py'), encoding='utf-8') as f:
        return re.search(r"__version__ = '([^']+)'", f.read()).group(1)


def read_requirements(name: str) -> list:
    """Requirement lines of ``name`` without comments or blank lines."""
    with open(osp.join(HERE, name), encoding='utf-8') as f:
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
    python_requires='>=3.8',
    packages=find_packages(include=['mdeq_mm', 'mdeq_mm.*']),
    install_requires=read_requirements('requirements.txt'),
    extras_require={
        # the benchmark's smoke test races our solvers against TorchDEQ's
        'tests': ['pytest>=7', 'torchdeq==0.1.0'],
        'benchmark': ['torchdeq==0.1.0'],
    },
    zip_safe=False,
)
