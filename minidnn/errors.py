"""The exceptions minidnn raises for bad input: each names the problem in user terms."""


class MinidnnError(Exception):
    """Base class of every error minidnn raises on purpose.

    ``exit_code``: what the command line exits with when this error ends a command.
    """

    exit_code = 2


class ShapeError(MinidnnError, ValueError):
    """An input's shape or dtype does not fit the layer or model it was given to."""


class ConfigError(MinidnnError, ValueError):
    """An unknown or invalid option (layer argument, optimizer setting, CLI flag)."""


class DataError(MinidnnError):
    """A dataset file is missing, truncated or not in the expected format."""


class ModelFileError(MinidnnError):
    """A model file is not a valid minidnn HDF5 file (corrupt, foreign, newer or inconsistent)."""


class NoOpenCLDeviceError(MinidnnError, RuntimeError):
    """No OpenCL platform/device is available (or none matches the requested one)."""


class TrainingDivergedError(MinidnnError, ArithmeticError):
    """The training loss became NaN/Inf or exploded: the weights are garbage, nothing is saved."""


class TrainingInterrupted(MinidnnError):
    """Training stopped on Ctrl-C (SIGINT) at a step boundary; the message says what was kept."""

    exit_code = 130


class FileWriteError(MinidnnError, OSError):
    """An output file cannot be written (a folder, read-only, no space left, ...)."""
