"""Small generated datasets in standard layouts, for the demo and the tests."""
from .synthetic_cityscapes import (SYNTHETIC_CLASSES, generate_cityscapes_like,
                                   render_street_scene)

__all__ = ['SYNTHETIC_CLASSES', 'generate_cityscapes_like', 'render_street_scene']
