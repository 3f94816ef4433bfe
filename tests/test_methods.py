"""The method registry: a toy method, one module-like class plus ``register``, is swept, tabled,
plotted and offered on the command line with no other edit."""
from __future__ import annotations

import numpy as np
import pytest

from minidnn.cli import build_parser, main
from minidnn.compress.methods import (Method, MethodRun, get_method, label_of, register,
                                      sweep_variants, unregister)
from minidnn.compress.methods.common import debias, record
from minidnn.compress.results import format_summary
from minidnn.compress.sweep import SweepSpec, make_jobs, run_sweep, sweep_jobs
from minidnn.errors import ConfigError

from test_compress import CONFIG, Tiny, synthetic


class Toy(Method):
    """Zero every weight below ``cut`` in magnitude (a one-shot threshold), then retrain."""

    name = "toy"
    label = "Toy"
    color = "tab:purple"
    params = ("cut",)

    def run(self, run: MethodRun):
        for _, p in run.model.prox_parameters():
            w = p.host_dense()
            p.set_mask((np.abs(w) >= run.value).astype(np.float32))
            p.backend.apply_mask(p.data, p.mask)
        records = [record("toy", run, 0)]
        if run.retrain:
            records.append(debias(run, "toy", 0)[0])
        return records, []


@pytest.fixture
def toy():
    register(Toy())
    yield get_method("toy")
    unregister("toy")


def _sweep_choices() -> list[str]:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    method = next(a for a in sub.choices["sweep"]._actions if a.dest == "method")
    return list(method.choices)


def test_toy_method_is_swept_tabled_plotted_and_offered(toy, tmp_path):
    assert {"toy", "toy+retrain"} <= set(sweep_variants()) and "toy+retrain" in _sweep_choices()
    assert label_of("toy+retrain") == "Toy (Retrain)"
    spec = SweepSpec(model="tiny", data="synthetic", train=CONFIG, steps=40, retrain_steps=5,
                     out=str(tmp_path), model_factory=Tiny, data_factory=synthetic, echo=False)
    param, jobs = sweep_jobs("toy+retrain", {"cut": [0.05, 0.2]}, retrain_steps=5)
    assert param == "cut" and [j.run_id for j in jobs] == ["toy+retrain-cut0.05",
                                                             "toy+retrain-cut0.2"]
    result = run_sweep(spec, jobs, plot=False, log=lambda s: None)
    assert not result["failed"]
    methods = [r["method"] for r in result["records"]]
    assert methods == ["toy", "toy", "toy+retrain", "toy+retrain"]
    assert result["records"][1]["zeros"] > result["records"][0]["zeros"] > 0
    summary = format_summary(result["records"], result["reference"], fraction=0.0)
    assert "Toy (Retrain)" in summary and "== Toy ==" in summary
    pytest.importorskip("matplotlib")
    assert main(["plot", str(tmp_path), "--out", str(tmp_path / "toy.png")]) == 0
    assert (tmp_path / "toy.png").stat().st_size > 1000


def test_unknown_and_unsweepable_methods_fail_clearly(toy):
    with pytest.raises(ConfigError, match="unknown method 'nope'"):
        get_method("nope")
    with pytest.raises(ConfigError, match="toy sweeps over cut"):
        make_jobs("toy", [0.1], "lam")
    with pytest.raises(ConfigError, match="no parameter to sweep"):
        make_jobs("dense", [0.1], "lam")
    assert "dense" not in sweep_variants()


def test_unregistered_method_leaves_no_trace():
    assert "toy" not in sweep_variants() and "toy" not in _sweep_choices()
