"""Checks of config values and arguments that raise a ``ValueError`` naming the bad value.

Used by the config dataclasses here and by the hooks, which validate their arguments the same
way.

Example:
    >>> check_int('max_iter', 0, 1)
    Traceback (most recent call last):
        ...
    ValueError: max_iter must be an int >= 1, got 0
"""
from typing import Any, Iterable, Mapping


def check_keys(cfg: Mapping[str, Any], allowed: Iterable[str], what: str) -> None:
    """Raise ``ValueError`` naming every key of ``cfg`` not in ``allowed``."""
    allowed = tuple(allowed)
    unknown = sorted(set(cfg) - set(allowed))
    if unknown:
        raise ValueError(f'unknown {what} key(s) {unknown}; valid keys: {sorted(allowed)}')


def check_choice(name: str, value: Any, choices: Iterable[str]) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f'{name}={value!r} is not valid; choose one of {sorted(choices)}')


def check_int(name: str, value: Any, minimum: int) -> None:
    """Raise ``ValueError`` unless ``value`` is an int ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f'{name} must be an int >= {minimum}, got {value!r}')


def check_number(name: str, value: Any, low: float, high: float = float('inf'),
                 low_inclusive: bool = False) -> None:
    """Raise ``ValueError`` unless ``value`` is a real number in the interval."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f'{name} must be a number, got {value!r}')
    above = value >= low if low_inclusive else value > low
    if not (above and value <= high):
        bracket = '[' if low_inclusive else '('
        raise ValueError(f'{name} must be in {bracket}{low}, {high}], got {value!r}')
