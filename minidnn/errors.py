"""The exceptions minidnn raises for bad input: each names the problem in user terms."""


class MinidnnError(Exception):
    """Base class of every error minidnn raises on purpose."""


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


class UnusableDeviceError(NoOpenCLDeviceError):
    """OpenCL devices exist, but the one asked for (or every one) cannot build or run kernels."""
