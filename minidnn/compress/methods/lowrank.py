"""Low-rank methods (issue 17): Tucker-2 (Kim et al. 2016), CP (Astrid & Lee 2018's hybrid
CP-SVD) and SVD of the linear layers, each swept over the energy threshold of its ranks.

A run decomposes the dense reference at ranks keeping ``energy`` of each layer (one shot, no
fine-tuning: the plain record), then fine-tunes the whole factorized network for
``spec.retrain_steps`` steps at ``spec.retrain_lr`` (default 1e-4) for the '+retrain' record.
(``minidnn decompose --finetune-steps`` runs the seed's iterative form: decompose one layer,
fine-tune, next.) A record counts the factors' weights as the stored values: ``nnz`` is the
factorized model's weight count, ``weights`` the dense one's, ``compression`` their ratio, so
the sweep's tables and plots place low-rank runs next to the sparse ones.
"""
from __future__ import annotations

from ...train import Trainer
from ..lowrank import FINETUNE_LR, DecomposeSettings, decompose_model
from ..measure import evaluate
from ..storage import load_weights
from .registry import Method, MethodRun, register


def _record(name: str, run: MethodRun, model, dense: int, layers: list, retrain_steps: int):
    factorized = model.weight_count()
    result = evaluate(model, run.test_ds)
    return {"method": name, "accuracy": result["accuracy"], "loss": result["loss"],
            "nnz": factorized, "weights": dense, "zeros": 1.0 - factorized / dense,
            "compression": dense / factorized,
            "layers": [{"name": r["layer"].rpartition(".")[2], "param": r["layer"],
                        "form": r["form"], "ranks": r["ranks"], "nnz": r["weights"],
                        "total": r["dense_weights"], "zeros": 1 - r["weights"] / r["dense_weights"],
                        "compression": r["dense_weights"] / r["weights"]} for r in layers],
            "steps": 0, "retrain_steps": retrain_steps}


class LowRankMethod(Method):
    """Decompose the reference at ranks keeping ``energy``; optionally fine-tune."""

    params = ("energy",)
    from_reference = True

    def run(self, run: MethodRun):
        spec = run.spec
        load_weights(run.model, run.reference)
        dense = run.model.weight_count()
        settings = DecomposeSettings(method=self.name, ranks=f"energy:{run.value:g}",
                                     seed=spec.train.seed)
        model, layers = decompose_model(run.model, settings, run.train_ds, spec.train, run.log)
        records = [_record(self.name, run, model, dense, layers, 0)]
        history = []
        if run.retrain and spec.retrain_steps:
            lr = spec.retrain_lr or FINETUNE_LR
            opt = spec.train.make_optimizer(model, spec.retrain_steps, lam=0.0, lr=lr)
            hist = spec.train.fit(Trainer(model, opt), run.train_ds, run.test_ds,
                                  spec.retrain_steps, seed_offset=1, log=run.log)
            history = hist.evals
            records.append(_record(self.name + "+retrain", run, model, dense, layers,
                                   spec.retrain_steps))
        return records, history


@register
class Tucker2(LowRankMethod):
    name = "tucker2"
    label = "Tucker-2"
    color = "tab:olive"


@register
class CP(LowRankMethod):
    name = "cp"
    label = "CP"
    color = "tab:cyan"


@register
class SVD(LowRankMethod):
    name = "svd"
    label = "SVD (fc)"
    color = "tab:pink"
