"""The exceptions minidnn raises on purpose: each names the problem in user terms.

Every one derives from ``MinidnnError`` and also from the built-in exception of the same kind
(``ShapeError`` is a ``ValueError``, ``DTypeError`` a ``TypeError``, ...), so callers may catch
either.
"""


class MinidnnError(Exception):
    """Base class of every error minidnn raises on purpose.

    ``exit_code``: what the command line exits with when this error ends a command.
    """

    exit_code = 2


class ShapeError(MinidnnError, ValueError):
    """An input's shape or size does not fit the layer, model or primitive it was given to."""


class DTypeError(MinidnnError, TypeError):
    """An argument has the wrong type or dtype (e.g. float64 to a float32 kernel)."""


class ConfigError(MinidnnError, ValueError):
    """An unknown or invalid option (layer argument, optimizer setting, CLI flag)."""


class StateError(MinidnnError, RuntimeError):
    """An operation called in a state that does not allow it (e.g. backward after eval)."""


class StateDictError(MinidnnError, KeyError):
    """A state dict's names do not match the model's parameters and buffers."""


class DataError(MinidnnError):
    """A dataset file is missing, truncated or not in the expected format."""


class ModelFileError(MinidnnError):
    """A model file is not a valid minidnn HDF5 file (corrupt, foreign, newer or inconsistent)."""


class KernelError(MinidnnError, RuntimeError):
    """An OpenCL program is missing from the installation or fails to build."""


class NoOpenCLDeviceError(MinidnnError, RuntimeError):
    """No OpenCL platform/device is available (or none matches the requested one)."""


class UnusableDeviceError(NoOpenCLDeviceError):
    """OpenCL devices exist, but the one asked for (or every one) cannot build or run kernels."""


class TrainingDivergedError(MinidnnError, ArithmeticError):
    """The training loss became NaN/Inf or exploded: the weights are garbage, nothing is saved."""


class TrainingInterrupted(MinidnnError):
    """Training stopped on Ctrl-C (SIGINT) at a step boundary; the message says what was kept."""

    exit_code = 130


class FileWriteError(MinidnnError, OSError):
    """An output file cannot be written (a folder, read-only, no space left, ...)."""
