"""minidnn: learning compressed (sparse) networks on NumPy and OpenCL (Lee & Lee 2019).

Everything a user needs is one import away (``import minidnn as mdn``; docs/tutorial.md):
subclass ``mdn.Model`` with layers, train it with a proximal optimizer and ``mdn.Trainer``,
``mdn.debias`` it, put it in ``mdn.to_inference_form`` (CSR where sparse), ``mdn.save`` it, and
``mdn.load`` it anywhere, on any backend, without its class.
"""
from .backend import Backend, NumpyBackend, get_backend
from .compress import freeze_zeros, to_inference_form
from .compress.debias import retrain as debias
from .data import (ArrayDataset, dataset_from_arrays, load_cifar10, load_dataset, load_mnist,
                   random_crop_flip)
from .errors import (ConfigError, DataError, MinidnnError, ModelFileError, NoOpenCLDeviceError,
                     ShapeError)
from .inference import InferencePlan, predict
from .io import describe, file_report, load, load_checkpoint, save, save_checkpoint
from .layers import (AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Dropout, Flatten,
                     GlobalAvgPool2d, Linear, MaxPool2d, Module, ReLU, Residual, Sequential,
                     SoftmaxCrossEntropy)
from .layers.model import Model
from .optim import (SGD, Adam, Constant, Cosine, ProxAdam, ProxRMSProp, ProxSGD, RMSProp,
                    StepDecay, Warmup, make_optimizer)
from .report import format_table, layer_stats, model_device_bytes, total_stats
from .train import History, Trainer

__all__ = [
    # networks
    "Model", "Module", "Sequential", "Residual", "Conv2d", "Linear", "ReLU", "MaxPool2d",
    "AvgPool2d", "GlobalAvgPool2d", "Flatten", "Dropout", "BatchNorm1d", "BatchNorm2d",
    "SoftmaxCrossEntropy",
    # training
    "SGD", "Adam", "RMSProp", "ProxSGD", "ProxAdam", "ProxRMSProp", "make_optimizer",
    "Constant", "Cosine", "StepDecay", "Warmup", "Trainer", "History",
    # data
    "ArrayDataset", "dataset_from_arrays", "load_dataset", "load_mnist", "load_cifar10",
    "random_crop_flip",
    # compression and reports
    "debias", "freeze_zeros", "to_inference_form", "layer_stats", "total_stats", "format_table",
    "model_device_bytes",
    # files
    "save", "load", "describe", "file_report", "save_checkpoint", "load_checkpoint",
    # inference
    "predict", "InferencePlan",
    # backends and errors
    "Backend", "NumpyBackend", "get_backend", "MinidnnError", "ShapeError", "ConfigError",
    "DataError", "ModelFileError", "NoOpenCLDeviceError",
]
