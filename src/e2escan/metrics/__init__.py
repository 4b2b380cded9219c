"""Metrics computed from what a scenario produced: error rates, account flags, leakage, costs."""

from .flagging import (
    false_flag_probability,
    log10_false_flag_probability,
    log10_poisson_false_flag_probability,
    max_images_for_target,
    poisson_false_flag_probability,
    required_threshold,
)

__all__ = [
    "false_flag_probability",
    "log10_false_flag_probability",
    "log10_poisson_false_flag_probability",
    "max_images_for_target",
    "poisson_false_flag_probability",
    "required_threshold",
]
