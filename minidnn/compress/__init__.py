"""Compression methods: l1 sparse coding (SpC), debiasing, magnitude pruning (Pru), MM, channel
pruning (ChP); FLOP counting; sweeps.

The algorithms live in ``spc``, ``debias``, ``prune`` and ``mm``; ``methods`` puts each behind
the one ``Method`` interface and registry that sweeps, results and the command line read.
"""
from ..train_config import TrainConfig
from .channel_prune import ChannelPruneSettings, finetune, prune_model_channels
from .channels import prunable_groups, prune_channels
from .debias import retrain
from .flops import cost_of, layer_costs, register_cost, total_cost
from . import lowrank_cost  # noqa: F401  (FLOP rules of the factorized layers)
from .measure import evaluate, measure
from .mm import LCState, LCPenalty, MMConfig, kappa_for_sparsity, mm_compress, top_kappa_masks
from .prune import magnitude_mask, prune, prune_masks, prune_retrain, sparsity_ramp
from .sparsify import freeze_zeros, to_inference_form
from .spc import layer_lams, train_spc

__all__ = ["freeze_zeros", "to_inference_form", "TrainConfig", "train_spc", "layer_lams",
           "retrain", "magnitude_mask", "prune_masks", "prune", "prune_retrain", "sparsity_ramp",
           "MMConfig", "LCState", "LCPenalty", "mm_compress", "top_kappa_masks",
           "kappa_for_sparsity", "evaluate", "measure", "ChannelPruneSettings",
           "prune_model_channels", "finetune", "prunable_groups", "prune_channels",
           "layer_costs", "total_cost", "cost_of", "register_cost"]
