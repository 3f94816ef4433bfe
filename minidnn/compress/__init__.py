"""Compression methods: l1 sparse coding (SpC), debiasing, magnitude pruning, MM."""
from .sparsify import freeze_zeros, to_inference_form

__all__ = ["freeze_zeros", "to_inference_form"]
