"""Deployment: fixed-budget ONNX export of MDEQ segmentors and classifiers."""
from .onnx_export import (TensorOutput, check_exportable, compare_with_pytorch, export_onnx,
                          fixed_budget, measure_latency, run_onnx)

__all__ = [
    'TensorOutput', 'check_exportable', 'compare_with_pytorch', 'export_onnx', 'fixed_budget',
    'measure_latency', 'run_onnx'
]
