"""Small data sets in standard layouts, for the demo, the tests and the learning benchmark."""
from .digits import DIGIT_CLASSES, DIGITS_MEAN, DIGITS_STD, write_digits_dataset
from .street_sequences import generate_cityscapes_sequences, render_street_sequence
from .synthetic_cityscapes import (SYNTHETIC_CLASSES, generate_cityscapes_like,
                                   render_street_scene)

__all__ = [
    'DIGIT_CLASSES', 'DIGITS_MEAN', 'DIGITS_STD', 'SYNTHETIC_CLASSES',
    'generate_cityscapes_like', 'generate_cityscapes_sequences', 'render_street_scene',
    'render_street_sequence', 'write_digits_dataset'
]
