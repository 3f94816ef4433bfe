"""Channel pruning (ChP): whole channels removed from the dense reference by the improved
naive-Bayes score ('chnb', Dai et al. 2021) or the filter l1 norm ('chl1'), then fine-tuned
('+retrain': ``spec.retrain_steps`` at ``spec.retrain_lr``). The swept parameter is
``ratio``, the fraction of every prunable layer's channels removed; per-layer overrides come
from ``spec.prune_per_layer`` when it names prunable layers (docs/methods.md)."""
from __future__ import annotations

from ..channel_prune import (ChannelPruneSettings, finetune, prune_model_channels,
                             relative_figures, weight_sizes)
from ..measure import evaluate
from ..storage import load_weights
from .registry import Method, MethodRun, register


def _record(name: str, run: MethodRun, before: dict, retrain_steps: int) -> dict:
    result = evaluate(run.model, run.test_ds)
    return {"method": name, "accuracy": result["accuracy"], "loss": result["loss"],
            **relative_figures(run.model, before), "steps": 0, "retrain_steps": retrain_steps}


class ChannelPruning(Method):
    """Channel pruning by ``score`` (set by the two registered subclasses)."""

    params = ("ratio",)
    from_reference = True
    score = "nb"

    def run(self, run: MethodRun):
        spec = run.spec
        load_weights(run.model, run.reference)
        before = weight_sizes(run.model)
        settings = ChannelPruneSettings(ratio=run.value, score=self.score,
                                        per_layer=getattr(spec, "prune_per_layer", None) or None,
                                        seed=spec.train.seed)
        cut = prune_model_channels(run.model, settings, run.train_ds, spec.train.batch_size,
                                   run.log)
        records = [_record(self.name, run, before, 0)]
        history = {"widths": cut["widths"]}
        if run.retrain:
            hist, _ = finetune(run.model, run.train_ds, run.test_ds, spec.retrain_steps,
                            spec.train, spec.retrain_lr, settings.bn_batches, run.log)
            records.append(_record(self.name + "+retrain", run, before, spec.retrain_steps))
            history["retrain"] = hist.evals
        return records, history


@register
class ChannelPruningNB(ChannelPruning):
    name = "chnb"
    label = "ChP-NB"
    color = "tab:olive"
    score = "nb"


@register
class ChannelPruningL1(ChannelPruning):
    name = "chl1"
    label = "ChP-L1"
    color = "tab:cyan"
    score = "l1"
