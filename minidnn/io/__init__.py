"""Model files and checkpoints in HDF5 (layout: docs/format.md).

``save``/``load`` write and rebuild a model in its smallest form (CSR where sparse);
``save_checkpoint``/``load_checkpoint`` resume training exactly; ``describe`` reports a file.
"""
from .checkpoint import load_checkpoint, save_checkpoint
from .model_file import describe, file_report, load, save

__all__ = ["save", "load", "describe", "file_report", "save_checkpoint", "load_checkpoint"]
