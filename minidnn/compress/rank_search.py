"""Genetic search of the ranks of all factorized layers at once (Dai et al. 2021's rank
optimization, issue 17).

A genome holds one gene per layer: a level of a geometric grid of rank fractions (level L-1
keeps the full rank, each level below keeps ``1/ratio`` of the one above), the same fraction of
each of a Tucker-2 layer's two ranks. A genome's cost is the mean of the weight and FLOP
fractions of the candidate layers (factorized over dense; all conv and linear layers of the zoo
models); its accuracy is measured on a
held-out split of the training data with the layers factorized at those ranks, without
fine-tuning. The search minimizes cost + ``penalty`` x the accuracy shortfall below
(reference accuracy - ``max_drop``). The decompositions are nested (truncated SVD and HOSVD,
and the tensor power method, whose first R terms are its rank-R result), so each layer is
decomposed once at its largest rank and every genome only truncates. Small population,
elitism, tournament selection, uniform crossover, one-level mutations; stops after
``generations`` or ``seconds``, whichever comes first.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from ..data import ArrayDataset
from ..layers.base import Module
from ..train import Trainer
from ..train_config import Log
from .decompose import cp_power, tucker2
from .factorize import (LayerChoice, dense_weights, factorize_from, factorized_weights,
                        layer_macs, max_rank, module_at, replace_module)
from .flops import layer_costs


@dataclass
class GASettings:
    """The search's size and objective (see the module docstring)."""

    population: int = 8
    generations: int = 12
    seconds: float = 120.0
    levels: int = 10
    ratio: float = 1.6
    max_drop: float = 0.05       # accuracy the unfine-tuned model may lose before the penalty
    penalty: float = 10.0
    seed: int = 0


CP_CAP = 256   # largest CP rank searched (the tensor power method runs once to it per layer)


def top_ranks(form: str, m: Module) -> dict:
    """The ranks of the top grid level: ``max_rank``, CP capped at CP_CAP."""
    top = max_rank(form, m)
    return {"rank": min(top["rank"], CP_CAP)} if form == "cp" else top


def level_ranks(form: str, m: Module, level: int, settings: GASettings) -> dict:
    """The ranks of ``m`` at one grid level (at least 1 each)."""
    frac = settings.ratio ** (level - (settings.levels - 1))
    return {k: max(1, int(math.ceil(frac * v))) for k, v in top_ranks(form, m).items()}


class _Factors:
    """Each layer's decomposition at its largest rank, truncated to build a layer at any rank."""

    def __init__(self, model: Module, choices: list[LayerChoice]) -> None:
        self.model, self.full = model, {}
        for c in choices:
            m = module_at(model, c.path)
            w = m.weight.host_dense().astype(np.float64)
            top = top_ranks(c.form, m)
            if c.form == "svd":
                self.full[c.path] = np.linalg.svd(w, full_matrices=False)
            elif c.form == "tucker2":
                self.full[c.path] = tucker2(w, top["rank_out"], top["rank_in"], "hosvd")[1:]
                # (U_out, U_in): the core of any truncation is recomputed from w
            else:
                self.full[c.path] = cp_power(w, top["rank"], n_iter=30)

    def layer(self, c: LayerChoice, m: Module, ranks: dict) -> Module:
        """The factorized layer at ``ranks`` from the truncated decomposition."""
        return factorize_from(m, c.form, ranks, self.full[c.path])


def _cost(choices, genome, originals, sizes, settings) -> float:
    """Mean of the weight and FLOP fractions of the candidate layers at the genome's ranks
    (a layer whose factorized form would be larger stays dense)."""
    weights = flops = dense_w = dense_f = 0
    for c, level in zip(choices, genome):
        m = originals[c.path]
        ranks = level_ranks(c.form, m, level, settings)
        dw, df = dense_weights(m), layer_macs(None, m, {}, sizes[c.path])
        fw, ff = factorized_weights(c.form, m, ranks), layer_macs(c.form, m, ranks, sizes[c.path])
        use = fw < dw
        weights += fw if use else dw
        flops += ff if use else df
        dense_w, dense_f = dense_w + dw, dense_f + df
    return 0.5 * (weights / dense_w + flops / dense_f)


def search_ranks(model: Module, choices: list[LayerChoice], heldout: ArrayDataset,
                 settings: GASettings | None = None, log: Log = print) -> dict[str, dict]:
    """{path: ranks} of the best genome found (module docstring); the model is left as it was."""
    settings = settings or GASettings()
    rng = np.random.default_rng(settings.seed)
    originals = {c.path: module_at(model, c.path) for c in choices}
    sizes = {r.name: tuple(r.in_shape[1:]) if len(r.in_shape) == 3 else None
             for r in layer_costs(model, heldout.shape)}
    factors = _Factors(model, choices)
    reference = Trainer(model, None).evaluate(heldout)["accuracy"]
    floor = reference - settings.max_drop
    cache: dict[tuple, tuple[float, float, float]] = {}

    def score(genome: tuple) -> tuple[float, float, float]:
        if genome not in cache:
            for c, level in zip(choices, genome):
                m = originals[c.path]
                ranks = level_ranks(c.form, m, level, settings)
                if factorized_weights(c.form, m, ranks) < dense_weights(m):
                    replace_module(model, c.path, factors.layer(c, m, ranks))
            acc = Trainer(model, None).evaluate(heldout)["accuracy"]
            for path, m in originals.items():
                replace_module(model, path, m)
            cost = _cost(choices, genome, originals, sizes, settings)
            cache[genome] = (cost + settings.penalty * max(0.0, floor - acc), cost, acc)
        return cache[genome]

    top = settings.levels - 1
    population = [tuple([top] * len(choices))] + [
        tuple(int(v) for v in rng.integers(0, settings.levels, len(choices)))
        for _ in range(settings.population - 1)]
    start = time.perf_counter()
    for gen in range(settings.generations):
        population.sort(key=lambda g: score(g)[0])
        best = population[0]
        f, cost, acc = score(best)
        log(f"ga: generation {gen}: best cost {cost:.3f} held-out accuracy {acc:.4f} "
            f"(reference {reference:.4f}) levels {list(best)}")
        if time.perf_counter() - start > settings.seconds:
            log(f"ga: time budget {settings.seconds:g} s spent")
            break
        population = [best] + [_child(population, score, rng, settings)
                               for _ in range(settings.population - 1)]
    best = min(population, key=lambda g: score(g)[0])
    return {c.path: level_ranks(c.form, originals[c.path], level, settings)
            for c, level in zip(choices, best)}


def _child(population: list[tuple], score, rng: np.random.Generator,
           settings: GASettings) -> tuple:
    """Two tournament winners crossed uniformly, then each gene moved one level with
    probability 1/len (at least one gene always moves)."""
    def pick() -> tuple:
        a, b = rng.choice(len(population), 2, replace=False)
        return min(population[a], population[b], key=lambda g: score(g)[0])
    x, y = pick(), pick()
    genes = [x[i] if rng.random() < 0.5 else y[i] for i in range(len(x))]
    forced = int(rng.integers(len(genes)))
    for i in range(len(genes)):
        if i == forced or rng.random() < 1.0 / len(genes):
            genes[i] = int(np.clip(genes[i] + rng.choice((-1, 1)), 0, settings.levels - 1))
    return tuple(genes)

