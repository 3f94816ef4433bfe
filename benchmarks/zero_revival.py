"""Zeros over the steps of SpC with a cosine schedule: without and with the support freeze.

Runs ``minidnn train MODEL --lam L --schedule cosine`` twice through the library (the same seed
and data), once as is and once with ``--freeze-support AT``, reads the zero fraction from the
training log lines (one count per logged step, made on the device), and draws both curves with
the lr schedule into one figure; prints the peak and final zeros of each.

    python benchmarks/zero_revival.py --model lenet5 --lam 0.36 --epochs 6 --freeze 0.5 \
        --data-root /work/shared/datasets --out docs/results/lenet5/zero-revival.png
"""
from __future__ import annotations

import argparse
import json
import re

from minidnn.train_config import TrainConfig
from minidnn.workflows import TrainSpec, train_model

LINE = re.compile(r"^step (\d+)/\d+\s+loss \S+\s+zeros ([\d.]+)%")


def zeros_curve(model: str, lam: float, epochs: float, freeze: float | None, data_root: str,
                log_every: int) -> tuple[list[int], list[float], dict]:
    """(steps, zero fractions, result) of one cosine-schedule run."""
    steps, zeros = [], []

    def log(text: str) -> None:
        hit = LINE.match(text)
        if hit:
            steps.append(int(hit.group(1)))
            zeros.append(float(hit.group(2)) / 100)
        elif "frozen" in text or text.startswith("test accuracy"):
            print(text, flush=True)

    config = TrainConfig.for_model(model, schedule="cosine", log_every=log_every, progress=False)
    result = train_model(TrainSpec(model=model, data_root=data_root, lam=lam, epochs=epochs,
                                   freeze_support=freeze, config=config,
                                   out=f"/tmp/zero-revival-{freeze}.h5"), log=log)
    return steps, zeros, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="lenet5")
    ap.add_argument("--lam", type=float, default=0.36)
    ap.add_argument("--epochs", type=float, default=6.0)
    ap.add_argument("--freeze", type=float, default=0.5)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--out", default="zero-revival.png")
    args = ap.parse_args()
    runs = {}
    for freeze in (None, args.freeze):
        steps, zeros, result = zeros_curve(args.model, args.lam, args.epochs, freeze,
                                           args.data_root, args.log_every)
        runs[freeze] = (steps, zeros)
        print(json.dumps({"freeze": freeze, "peak_zeros": max(zeros), "final_zeros": zeros[-1],
                          "accuracy": result["accuracy"], "steps": result["steps"]}), flush=True)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from minidnn.optim import Cosine
    fig, ax = plt.subplots(figsize=(7, 4))
    for freeze, (steps, zeros) in runs.items():
        label = "SpC, cosine lr" if freeze is None else f"+ support frozen at {freeze:g} of the run"
        ax.plot(steps, [100 * z for z in zeros], label=label)
    total = max(runs[None][0])
    lr = Cosine(1.0, total)
    ax2 = ax.twinx()
    ax2.plot(range(0, total + 1, 10), [lr(s) for s in range(0, total + 1, 10)], color="gray",
             ls=":", label="lr / lr0")
    ax2.set_ylabel("lr / lr0")
    ax.set_xlabel("step")
    ax.set_ylabel("zeros (% of conv/linear weights)")
    ax.set_ylim(max(0.0, 100 * max(max(z) for _, z in runs.values()) - 12), 100)
    ax.set_title(f"{args.model}, Prox-Adam lam {args.lam:g}: zeros revive as the lr decays")
    ax.legend(loc="lower center")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
