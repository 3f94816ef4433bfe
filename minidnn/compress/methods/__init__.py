"""The compression methods behind one interface, and their registry (see ``registry``).

Importing this package registers the built-in methods, in the order tables and plots use:
SpC, reweighted l1, annealed l0, Pru, MM, the dense reference, SpC+retrain+Q (quantized), then
group l2,1, MPD (permuted block-diagonal masks), channel pruning (ChP-NB, ChP-L1) and the low-rank
methods (Tucker-2, CP, SVD).
A new method is one module here (or anywhere) that subclasses ``Method`` and calls ``register``.
"""
from . import spc, rwl1, l0, pru, mm, dense, spcq, gl21, mpd  # noqa: F401  (registration, in order)
from . import chp  # noqa: F401  (channel pruning, issue 17)
from . import lowrank  # noqa: F401  (tucker2, cp, svd: issue 17)
from .registry import (RETRAIN, Method, MethodRun, all_methods, color_of, get_method, l1_methods,
                       label_of, rank_of, register, sweep_variants, unregister)

__all__ = ["Method", "MethodRun", "RETRAIN", "register", "unregister", "get_method",
           "all_methods", "l1_methods", "sweep_variants", "label_of", "color_of", "rank_of"]
