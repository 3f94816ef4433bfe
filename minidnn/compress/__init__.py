"""Compression methods: l1 sparse coding (SpC), debiasing, magnitude pruning (Pru), MM; sweeps."""
from .debias import retrain
from .mm import LCState, MMConfig, kappa_for_sparsity, mm_compress, top_kappa_masks
from .prune import magnitude_mask, prune, prune_masks, prune_retrain, sparsity_ramp
from .sparsify import freeze_zeros, to_inference_form
from .spc import layer_lams, train_spc
from .training import TrainConfig, compression_figures, evaluate, measure

__all__ = ["freeze_zeros", "to_inference_form", "TrainConfig", "train_spc", "layer_lams",
           "retrain", "magnitude_mask", "prune_masks", "prune", "prune_retrain", "sparsity_ramp",
           "MMConfig", "LCState", "mm_compress", "top_kappa_masks", "kappa_for_sparsity",
           "evaluate", "measure", "compression_figures"]
