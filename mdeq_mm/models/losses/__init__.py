from .fixed_point_correction import (correction_weights, decode_losses,
                                     fixed_point_correction_losses)

__all__ = ['correction_weights', 'decode_losses', 'fixed_point_correction_losses']
