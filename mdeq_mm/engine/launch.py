"""What ``tools/train.py`` and ``tools/test.py`` share: config loading and runner building."""
import os.path as osp
from typing import Optional

from mmengine.config import Config
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from .distributed import init_cpu_process_group


def load_tool_config(config: str,
                     cfg_options: Optional[dict] = None,
                     launcher: str = 'none',
                     work_dir: Optional[str] = None) -> Config:
    """Load ``config`` the way mmseg's tools do.

    Args:
        config (str): Config file path.
        cfg_options (dict, optional): ``--cfg-options`` overrides.
        launcher (str): ``--launcher`` value. Defaults to 'none'.
        work_dir (str, optional): ``--work-dir``; otherwise the config's ``work_dir``, else
            ``./work_dirs/<config name>``.

    Returns:
        Config: The merged config.
    """
    cfg = Config.fromfile(config)
    cfg.launcher = launcher
    if cfg_options is not None:
        cfg.merge_from_dict(cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config))[0])
    return cfg


def build_runner(cfg: Config) -> Runner:
    """The config's runner (``runner_type`` or mmengine's), with a gloo process group started
    first on CPU-only machines under ``launcher='pytorch'``, so that configs without
    ``CPUDistributedRunner`` (e.g. the HRNet baselines) also run multi-process on CPU."""
    if cfg.get('launcher', 'none') == 'pytorch':
        init_cpu_process_group()
    return RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
