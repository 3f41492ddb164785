"""Shared pytest configuration and fixtures for the whole suite."""
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / 'configs'
NO_CUDA = 'needs a CUDA GPU; torch.cuda.is_available() is False here (tools/check_gpu.sh runs them)'


def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'slow: end-to-end Runner / multi-process runs (deselect with -m "not slow")')
    config.addinivalue_line(
        'markers', 'cuda: needs a CUDA GPU; runs when torch sees one, skipped otherwise '
        '(select with -m cuda)')


def pytest_collection_modifyitems(config, items):
    """Skip the ``cuda`` tests, with the reason, where no GPU is visible."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason=NO_CUDA)
    for item in items:
        if 'cuda' in item.keywords:
            item.add_marker(skip)


def pytest_generate_tests(metafunc):
    """A test that takes ``config_file`` runs once for every shipped config (not the bases)."""
    if 'config_file' in metafunc.fixturenames:
        paths = sorted(CONFIGS.glob('[!_]*/*.py'))
        metafunc.parametrize('config_file', [str(path) for path in paths],
                             ids=[path.stem for path in paths])


@pytest.fixture(autouse=True)
def single_thread():
    """Tiny ops are dominated by thread hand-off; on a busy machine one thread is far faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='session')
def repo() -> Path:
    """The repository root."""
    return REPO


@pytest.fixture(scope='session')
def config_path() -> Callable[[str], str]:
    """``config_path('mdeq/NAME.py')``: the absolute path of a shipped config."""
    return lambda name: str(CONFIGS / name)


@pytest.fixture(scope='session')
def demo_config(config_path) -> str:
    """The quick-start config: the tiny MDEQ segmentor on generated street scenes."""
    return config_path('mdeq/fcn_mdeq-tiny_1xb4-300it_demo-cityscapes-64x128.py')


def _run_tool(args: Sequence[str],
              timeout: float = 900,
              env: Optional[Dict[str, str]] = None,
              succeed: bool = True) -> str:
    command = ['bash' if str(args[0]).endswith('.sh') else sys.executable, *args]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    output = proc.stdout + proc.stderr
    assert (proc.returncode == 0) == succeed, output[-5000:]
    return output


@pytest.fixture(scope='session')
def run_tool() -> Callable[..., str]:
    """``run_tool(args, timeout=900, env=None, succeed=True)`` runs a script of the repository
    (``tools/train.py ...``, a ``.sh`` through bash, ``-m module ...``) in a fresh process from
    the repository root with this interpreter and returns its combined output; it must exit 0
    (``succeed=True``) or fail (``succeed=False``)."""
    return _run_tool


@pytest.fixture
def free_port() -> str:
    """A TCP port the OS reports free right now (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', 0))
        return str(sock.getsockname()[1])
