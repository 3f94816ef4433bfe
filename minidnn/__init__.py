"""minidnn: learning compressed (sparse) networks on NumPy and OpenCL (Lee & Lee 2019)."""
from .io import load, save

__all__ = ["load", "save"]
