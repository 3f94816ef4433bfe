"""The compression methods behind one interface, and their registry (see ``registry``).

Importing this package registers the built-in methods, in the order tables and plots use:
SpC, Pru, MM, the dense reference, then SpC+retrain+Q (quantized, issue 16). A new method is one module here (or anywhere) that
subclasses ``Method`` and calls ``register``.
"""
from . import spc, pru, mm, dense, spcq  # noqa: F401  (registration, in this order)
from .registry import (RETRAIN, Method, MethodRun, all_methods, color_of, get_method, label_of,
                       rank_of, register, sweep_variants, unregister)

__all__ = ["Method", "MethodRun", "RETRAIN", "register", "unregister", "get_method",
           "all_methods", "sweep_variants", "label_of", "color_of", "rank_of"]
