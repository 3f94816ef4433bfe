"""Workflows: what each ``minidnn`` subcommand runs, as library functions (same result from
Python as from the command line). Sweeps are ``minidnn.compress.sweep.run_sweep``."""
from .channels import ChannelPruneSpec, prune_channels_file
from .common import Setup, check_input_shape, save_model_file, set_up
from .compress import CompressSpec, dense_reference, mm_budget, mm_model, prune_model
from .decompose import DecomposeSpec, decompose_file
from .evaluate import EvaluateSpec, evaluate_file
from .quantize import (QuantizeSettings, QuantizeSpec, quantize_file, quantize_stage,
                       save_quantized)
from .train import TRAIN_METHODS, TrainSpec, checkpointing, train_model

__all__ = ["Setup", "set_up", "check_input_shape", "save_model_file", "TrainSpec",
           "train_model", "checkpointing", "TRAIN_METHODS", "EvaluateSpec", "evaluate_file",
           "CompressSpec", "dense_reference", "prune_model", "mm_model", "mm_budget",
           "QuantizeSettings", "QuantizeSpec", "quantize_file", "quantize_stage",
           "save_quantized", "ChannelPruneSpec", "prune_channels_file", "DecomposeSpec",
           "decompose_file"]
