"""Measurement as a library: memory probe, step timing in interleaved rounds, solver races,
FLOPs, goals and reports. Imports the models and the OpenMMLab toolboxes; nothing in
``mdeq_mm.deq`` or ``mdeq_mm.models`` imports it."""
from .benchmark import BenchmarkSettings, run_benchmark
from .data import generated_scenes, make_batch, to_inputs
from .goals import Goal, GoalThresholds, judge
from .memory import LiveTensorBytes, peak_tensor_bytes, tensor_bytes
from .models import build_mdeq_model, build_model, find_mdeq, load_config, mdeq_budgets
from .report import write_report
from .solvers import CountedF, race
from .steps import StepWorker, interleaved_steps
from .timing import RatioSummary, interleaved_times
from .video import measure_warm_start, plot_warm_start

__all__ = [
    'BenchmarkSettings', 'CountedF', 'Goal', 'GoalThresholds', 'LiveTensorBytes',
    'RatioSummary', 'StepWorker', 'build_mdeq_model', 'build_model', 'find_mdeq', 'generated_scenes',
    'interleaved_steps', 'interleaved_times', 'judge', 'load_config', 'make_batch',
    'mdeq_budgets', 'measure_warm_start', 'peak_tensor_bytes', 'plot_warm_start', 'race',
    'run_benchmark', 'tensor_bytes', 'to_inputs', 'write_report'
]
