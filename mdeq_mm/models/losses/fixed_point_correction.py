"""Fixed-point correction: the task's own heads and losses on states sampled along a solve.

DEQ-Flow (Bai et al., CVPR 2022) also supervises a few states of the solver's trajectory,
each with an inexact gradient, which trains the layer to reach a good equilibrium in fewer
steps. The engine samples the states (:class:`mdeq_mm.deq.TrajectoryConfig`); here they are
decoded by the segmentor's or classifier's own neck and heads, so a stock config keeps its
model type, dataset, loss and metric.
"""
from typing import Any, Dict, List, Sequence, Tuple

from mmpretrain.models.classifiers import ImageClassifier
from mmseg.models.segmentors import EncoderDecoder
from torch import Tensor, nn

from mdeq_mm.deq.checks import check_choice, check_int, check_number

WEIGHTINGS = ('exp', 'constant')
KEY_PREFIX = 'fpc'


def correction_weights(n_states: int, gamma: float = 0.8, weighting: str = 'exp') -> List[float]:
    """The loss weight of each of ``n_states`` sampled states, earliest first.

    With the final state (weight 1, the model's ordinary loss) the trajectory has
    ``n = n_states + 1`` states; ``'exp'`` weights state ``k`` by ``gamma ** (n - k - 1)``,
    so earlier states count less, ``'constant'`` weights every state by 1.

    Args:
        n_states (int): Sampled states (>= 0).
        gamma (float): Decay in (0, 1] of ``'exp'``. Defaults to 0.8.
        weighting (str): ``'exp'`` or ``'constant'``. Defaults to 'exp'.

    Returns:
        list[float]: ``n_states`` weights.

    Example:
        >>> [round(w, 2) for w in correction_weights(3, gamma=0.8)]
        [0.51, 0.64, 0.8]
        >>> correction_weights(2, weighting='constant')
        [1.0, 1.0]
    """
    check_int('n_states', n_states, 0)
    check_number('gamma', gamma, 0.0, 1.0)
    check_choice('weighting', weighting, WEIGHTINGS)
    if weighting == 'constant':
        return [1.0] * n_states
    return [float(gamma**(n_states - k)) for k in range(n_states)]


def decode_losses(model: nn.Module, feats: Sequence[Tensor], data_samples: Any) -> Dict[str, Any]:
    """The losses ``model`` computes in training from backbone features ``feats``.

    The features go through the model's neck (if any), then its heads, exactly as in its own
    ``loss()``: mmseg's ``EncoderDecoder`` (decode head and auxiliary heads, keys
    ``decode.*`` / ``aux*.*``) and mmpretrain's ``ImageClassifier`` (its head's keys).

    Args:
        model (nn.Module): The data model (not a wrapper).
        feats (Sequence[Tensor]): Backbone outputs, as the backbone returns them.
        data_samples: The batch's data samples, as given to ``model.loss``.

    Returns:
        dict: The heads' loss dict.

    Raises:
        TypeError: For a model of another type.
    """
    feats = tuple(feats)
    if isinstance(model, EncoderDecoder):
        if model.with_neck:
            feats = model.neck(feats)
        losses = model._decode_head_forward_train(feats, data_samples)
        if model.with_auxiliary_head:
            losses.update(model._auxiliary_head_forward_train(feats, data_samples))
        return losses
    if isinstance(model, ImageClassifier):
        if model.with_neck:
            feats = model.neck(feats)
        return model.head.loss(feats, data_samples)
    raise TypeError('fixed-point correction decodes with an mmseg EncoderDecoder or an '
                    f'mmpretrain ImageClassifier, got {type(model).__name__}')


def fixed_point_correction_losses(model: nn.Module, states: Sequence[Tuple[Tensor, ...]],
                                  data_samples: Any,
                                  weights: Sequence[float]) -> Dict[str, Tensor]:
    """The weighted losses of sampled states, to add to the model's loss dict.

    Every loss term (a key containing ``'loss'``) of :func:`decode_losses` on state ``k`` is
    multiplied by ``weights[k]`` and returned under ``fpc{k}.<key>``, e.g.
    ``fpc0.decode.loss_ce``, so each state's terms are logged on their own and summed into the
    total loss by mmengine; other entries (accuracies) are left out.

    Args:
        model (nn.Module): The data model (not a wrapper).
        states (Sequence[tuple[Tensor]]): Sampled backbone states, earliest first.
        data_samples: The batch's data samples.
        weights (Sequence[float]): One weight per state (see :func:`correction_weights`).

    Returns:
        dict[str, Tensor]: The weighted loss terms.
    """
    if len(weights) != len(states):
        raise ValueError(f'got {len(weights)} weights for {len(states)} states')
    losses: Dict[str, Tensor] = {}
    for k, (state, weight) in enumerate(zip(states, weights)):
        for key, value in decode_losses(model, state, data_samples).items():
            if 'loss' in key:
                losses[f'{KEY_PREFIX}{k}.{key}'] = _scaled(value, weight)
    return losses


def _scaled(value: Any, weight: float) -> Any:
    """``weight * value`` for a loss tensor or a list of them (mmengine sums lists)."""
    if isinstance(value, (list, tuple)):
        return [weight * item for item in value]
    return weight * value
