"""Provide mmcv with its compiled ops for the installed torch.

mmseg 1.x imports ``mmcv.ops`` at import time and accepts only mmcv < 2.2.0, but PyPI ships
mmcv 2.1.0 as a source distribution only. This script, in order:

1. does nothing if the wanted mmcv is installed and ``mmcv.ops`` loads;
2. installs a matching prebuilt wheel from ``--wheel-dir`` / ``$MDEQ_MMCV_WHEEL_DIR``
   (``os.pathsep``-separated) or from the local cache, keeping the first one whose ops load;
3. otherwise builds a wheel from the PyPI source distribution (raising the C++ standard to
   C++20, which torch >= 2.10 headers require), caches it per torch version, and installs it.

Example::

    python tools/install_mmcv.py --wheel-dir /path/to/wheels
"""
import argparse
import glob
import os
import os.path as osp
import re
import subprocess
import sys
import tarfile
import tempfile

MMCV_VERSION = '2.1.0'
CHECK_OPS = ('import mmcv, mmcv.ops; '
             'assert mmcv.__version__ == {!r}, mmcv.__version__').format(MMCV_VERSION)
STD_FLAG = re.compile(r'-std=c\+\+1[147]')


def log(msg: str) -> None:
    print(f'[install_mmcv] {msg}', flush=True)


def pip(*args: str, env: dict = None) -> None:
    subprocess.check_call([sys.executable, '-m', 'pip', *args], env=env)


def ops_load() -> bool:
    """Whether the installed mmcv has the wanted version and its compiled ops load."""
    return subprocess.call([sys.executable, '-c', CHECK_OPS],
                           stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL) == 0


def torch_version() -> str:
    import torch
    return torch.__version__.split('+')[0]


def cache_dir() -> str:
    root = os.environ.get('XDG_CACHE_HOME', osp.expanduser('~/.cache'))
    return osp.join(root, 'mdeq_mm', 'wheels', f'torch-{torch_version()}')


def candidate_wheels(dirs: list) -> list:
    py_tag = f'cp{sys.version_info.major}{sys.version_info.minor}'
    wheels = []
    for d in dirs:
        wheels += sorted(
            glob.glob(osp.join(d, f'mmcv-{MMCV_VERSION}-{py_tag}-*.whl')))
    return wheels


def try_wheel(wheel: str) -> bool:
    log(f'trying {wheel}')
    try:
        pip('install', '--no-deps', '--force-reinstall', wheel)
        pip('install', wheel)  # mmcv's own dependencies (mmengine, opencv, ...)
    except subprocess.CalledProcessError:
        return False
    if ops_load():
        return True
    log(f'{osp.basename(wheel)} does not load with torch {torch_version()}')
    return False


def needs_cxx20() -> bool:
    major, minor = (int(x) for x in torch_version().split('.')[:2])
    return (major, minor) >= (2, 10)


def build_wheel(out_dir: str) -> str:
    """Build mmcv from its PyPI source distribution into ``out_dir``."""
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        pip('download', '--no-deps', '--no-binary', ':all:',
            f'mmcv=={MMCV_VERSION}', '-d', tmp)
        sdist = glob.glob(osp.join(tmp, 'mmcv-*.tar.gz'))[0]
        with tarfile.open(sdist) as tar:
            safe = {'filter': 'data'} if hasattr(tarfile, 'data_filter') else {}
            tar.extractall(tmp, **safe)
        src = osp.join(tmp, f'mmcv-{MMCV_VERSION}')
        if needs_cxx20():
            setup_py = osp.join(src, 'setup.py')
            with open(setup_py, encoding='utf-8') as f:
                text = f.read()
            with open(setup_py, 'w', encoding='utf-8') as f:
                f.write(STD_FLAG.sub('-std=c++20', text))
        env = dict(os.environ, MAX_JOBS=os.environ.get('MAX_JOBS', '2'))
        log('building mmcv ops from source (about 30 min on 2 cores)')
        pip('wheel', '--no-build-isolation', '--no-deps', src, '-w', out_dir,
            env=env)
    return candidate_wheels([out_dir])[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--wheel-dir', action='append', default=[],
                        help='directory with prebuilt mmcv wheels (repeatable)')
    parser.add_argument('--no-build', action='store_true',
                        help='fail instead of building from source')
    args = parser.parse_args()

    if ops_load():
        log(f'mmcv {MMCV_VERSION} with ops is already installed')
        return 0
    env_dirs = os.environ.get('MDEQ_MMCV_WHEEL_DIR', '')
    dirs = args.wheel_dir + [d for d in env_dirs.split(os.pathsep) if d]
    dirs.append(cache_dir())
    for wheel in candidate_wheels(dirs):
        if try_wheel(wheel):
            log(f'installed {wheel}')
            return 0
    if args.no_build:
        log(f'no usable mmcv {MMCV_VERSION} wheel in {dirs}')
        return 1
    wheel = build_wheel(cache_dir())
    if not try_wheel(wheel):
        log(f'the freshly built {wheel} does not load')
        return 1
    log(f'built and cached {wheel}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
