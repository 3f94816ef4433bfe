"""MM: learning-compression by the method of multipliers from the dense reference."""
from __future__ import annotations

from dataclasses import replace

from ..mm import kappa_for_sparsity, mm_compress
from ..storage import load_weights
from .common import debias, record
from .registry import Method, MethodRun, register


@register
class MM(Method):
    """The LC algorithm (``spec.mm``) with an l0 budget as a ``sparsity`` or an l1 ``alpha``."""

    name = "mm"
    label = "MM"
    color = "tab:green"
    params = ("sparsity", "alpha")
    aliases = {"lam": "alpha"}
    from_reference = True

    def run(self, run: MethodRun):
        spec = run.spec
        load_weights(run.model, run.reference)
        if run.param == "sparsity":
            mm = replace(spec.mm, penalty="l0", kappa=kappa_for_sparsity(run.model, run.value))
        else:
            mm = replace(spec.mm, penalty="l1", alpha=run.value)
        history = mm_compress(run.model, run.train_ds, run.test_ds, mm, spec.train,
                              form=spec.retrain_form, log=run.log)
        mm_steps = mm.l_steps * mm.lc_iters
        records = [record("mm", run, mm_steps)]
        if run.retrain:
            records.append(debias(run, "mm", mm_steps)[0])
        return records, history
