"""MPD: MPDCompress (issue 18), fixed random permuted block-diagonal masks from step 0."""
from __future__ import annotations

from dataclasses import replace

from ...optim.hooks import L1Prox
from ...train import Trainer
from ..mpd import MPDSettings, apply_mpd, blocks_value
from .common import record
from .registry import Method, MethodRun, register


@register
class MPD(Method):
    """Train with B diagonal blocks per conv/linear weight (``spec.mpd``: per-layer B, conv
    layers or not, blocks on the conv matrix or on channels) for the run's steps; swept over
    ``blocks`` (compression ~ B). In ``minidnn train --method mpd --lam L`` the l1 prox also
    acts inside the blocks (SpC within the blocks)."""

    name = "mpd"
    label = "MPD"
    color = "tab:olive"
    params = ("blocks",)
    retrainable = False

    def prox_hook(self, steps: int) -> L1Prox:
        """The plain soft-threshold, applied to the blocks' values when lam > 0."""
        return L1Prox()

    def run(self, run: MethodRun):
        settings = replace(getattr(run.spec, "mpd", None) or MPDSettings(),
                           blocks=blocks_value(run.value), seed=run.spec.train.seed)
        apply_mpd(run.model, settings, run.log)
        config = run.spec.train
        opt = config.make_optimizer(run.model, run.steps, lam=0.0)
        hist = config.fit(Trainer(run.model, opt), run.train_ds, run.test_ds, run.steps,
                          log=run.log)
        rec = record(self.name, run, run.steps)
        rec["blocks"] = settings.blocks
        return [rec], hist.evals
