"""Inference utilities on top of the models: warm-started video inference."""
from .warm_start import VideoWarmStart

__all__ = ['VideoWarmStart']
