"""Where sparse beats dense: LeNet-5's fc1 forward (W 500 x 800) as CSR and as dense matrices.

For each batch and density, times ``y = x @ W.T`` with the OpenCL CSR kernel (``csr_matmul_t``),
the OpenCL dense GEMM (``gemm(x, w, trans_b=True)``), the textbook one-work-item-per-output CSR
kernel (the baseline the CSR kernels replace), scipy.sparse, NumPy dense and PyTorch dense.
Methods run interleaved, round after round; each sample follows one untimed call and times
back-to-back calls ending in one device sync (no ``finish()`` per op, as in training); the
table shows medians and ratios.

    python benchmarks/bench_csr_crossover.py [--rounds 15] [--backward] [--plot out.png]
"""
from __future__ import annotations

import argparse
import time
from typing import Callable

import numpy as np

O, K = 500, 800
DENSITIES = [0.01, 0.02, 0.03, 0.05, 0.10, 0.20, 0.30, 0.50]
BATCHES = [1, 128, 1000]


def sparse_weight(rng: np.random.Generator, density: float) -> np.ndarray:
    """fc1-sized weight with exactly round(density * O * K) nonzeros at random places."""
    w = np.zeros(O * K, np.float32)
    nnz = int(round(density * O * K))
    w[rng.choice(O * K, nnz, replace=False)] = rng.standard_normal(nnz).astype(np.float32)
    return w.reshape(O, K)


def calibrate(fn: Callable[[], object], sync: Callable[[], None], target_s: float) -> int:
    """Calls per sample so that one sample lasts about target_s."""
    fn()
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    dt = max(time.perf_counter() - t0, 1e-6)
    return int(min(200, max(1, target_s / dt)))


def measure(methods: dict[str, tuple[Callable[[], object], Callable[[], None]]], rounds: int,
            target_s: float) -> dict[str, float]:
    """Median seconds per call of each method, sampled interleaved over ``rounds`` rounds."""
    inner = {name: calibrate(fn, sync, target_s) for name, (fn, sync) in methods.items()}
    samples: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(rounds):
        for name, (fn, sync) in methods.items():
            fn()  # untimed: wakes the method's worker threads after the other methods ran
            sync()
            t0 = time.perf_counter()
            for _ in range(inner[name]):
                fn()
            sync()
            samples[name].append((time.perf_counter() - t0) / inner[name])
    return {name: float(np.median(s)) for name, s in samples.items()}


def opencl_methods(backend, x: np.ndarray, w: np.ndarray, dense_ok: bool, naive: bool) -> dict:
    """OpenCL CSR, OpenCL dense and the naive CSR kernel on device-resident operands."""
    xd, wd = backend.from_host(x), backend.from_host(w)
    row_ptr, col_idx, values = backend.csr_from_dense(wd)
    sync = backend.synchronize
    methods = {"cl_csr": (lambda: backend.csr_matmul_t(xd, row_ptr, col_idx, values, (O, K)),
                          sync)}
    if dense_ok:
        methods["cl_dense"] = (lambda: backend.gemm(xd, wd, trans_b=True), sync)
    if naive:
        m = x.shape[0]
        i32 = np.int32

        def naive_kernel():
            y = backend.empty((m, O))
            backend.runtime.launch("csr", "csr_spmm_scalar", (O, m, 1), (8, 1, 1), xd, row_ptr,
                                   col_idx, values, i32(1), i32(m), i32(K), i32(O), y)
            return y
        methods["cl_naive"] = (naive_kernel, sync)
    return methods


def backward_methods(backend, x: np.ndarray, w: np.ndarray, dense_ok: bool) -> dict:
    """The two backward products, CSR against dense: dx = dy @ W and dW = dy^T @ x (at the
    nonzeros for CSR; everywhere for dense)."""
    rng = np.random.default_rng(1)
    dy = rng.standard_normal((x.shape[0], O)).astype(np.float32)
    xd, dyd, wd = backend.from_host(x), backend.from_host(dy), backend.from_host(w)
    row_ptr, col_idx, values = backend.csr_from_dense(wd)
    t = backend.csr_transpose(row_ptr, col_idx, values, (O, K))
    grad = backend.zeros((max(1, int(values.size)),))
    sync = backend.synchronize
    methods = {
        "dx_csr": (lambda: backend.csr_matmul(dyd, *t[:3], (O, K)), sync),
        "dw_csr": (lambda: backend.csr_sddmm(dyd, xd, row_ptr, col_idx, (O, K), grad), sync),
        "dx_numpy": (lambda: dy @ w, lambda: None),
        "dw_numpy": (lambda: dy.T @ x, lambda: None),
    }
    if dense_ok:
        methods["dx_dense"] = (lambda: backend.gemm(dyd, wd), sync)
        methods["dw_dense"] = (lambda: backend.gemm(dyd, xd, trans_a=True), sync)
    return methods


def host_methods(x: np.ndarray, w: np.ndarray) -> dict:
    """scipy.sparse, NumPy dense and PyTorch dense (when importable) on host arrays."""
    def nosync() -> None:
        pass
    methods = {}
    try:
        import scipy.sparse as sp
        w_csr = sp.csr_matrix(w)
        methods["scipy"] = (lambda: w_csr @ x.T, nosync)  # (O, M): not transposed back
    except ImportError:
        pass
    methods["numpy"] = (lambda: x @ w.T, nosync)
    try:
        import torch
        xt, wt = torch.from_numpy(x), torch.from_numpy(w)
        methods["torch"] = (lambda: torch.nn.functional.linear(xt, wt), nosync)
    except ImportError:
        pass
    return methods


def check_gemm(backend) -> bool:
    """True when the OpenCL GEMM is implemented and correct on a small case."""
    try:
        a = np.arange(12, dtype=np.float32).reshape(3, 4)
        b = np.ones((2, 4), np.float32)
        got = backend.to_host(backend.gemm(backend.from_host(a), backend.from_host(b),
                                           trans_b=True))
        return bool(np.allclose(got, a @ b.T))
    except Exception:  # not implemented yet (another mixin): fall back to host dense baselines
        return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9, help="interleaved samples per method")
    ap.add_argument("--sample-ms", type=float, default=5.0, help="target length of one sample")
    ap.add_argument("--device", default=None, help="OpenCL device (as MINIDNN_DEVICE)")
    ap.add_argument("--batches", type=int, nargs="*", default=BATCHES)
    ap.add_argument("--densities", type=float, nargs="*", default=DENSITIES)
    ap.add_argument("--no-naive", action="store_true", help="skip the textbook CSR kernel")
    ap.add_argument("--backward", action="store_true",
                    help="also time the backward products (dx = dy W, dW on the pattern)")
    ap.add_argument("--plot", default=None, help="write a speedup plot (needs matplotlib)")
    args = ap.parse_args()

    from minidnn.backend.opencl_backend import OpenCLBackend
    backend = OpenCLBackend(args.device)
    dense_ok = check_gemm(backend)
    try:
        import torch
        torch_note = f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    except ImportError:
        torch_note = "torch not importable"
    print(f"device: {backend.device_name}")
    print(f"fc1 forward y = x @ W.T, W {O}x{K}; median of {args.rounds} interleaved samples; "
          f"{torch_note}")
    if not dense_ok:
        print("NOTE: OpenCL gemm not available: dense baselines are NumPy/PyTorch only")
    rng = np.random.default_rng(0)
    names = ["cl_csr", "cl_dense", "cl_naive", "scipy", "numpy", "torch"]
    header = (f"{'batch':>5} {'dens':>5} {'nnz':>6} | " + " ".join(f"{n:>9}" for n in names)
              + " | CSR speedup vs: cl_dense  numpy  torch  scipy  naive")
    print("times in ms")
    print(header)
    print("-" * len(header))
    results = []
    for batch in args.batches:
        x = rng.standard_normal((batch, K)).astype(np.float32)
        for density in args.densities:
            w = sparse_weight(rng, density)
            methods = opencl_methods(backend, x, w, dense_ok, not args.no_naive)
            methods.update(host_methods(x, w))
            t = measure(methods, args.rounds, args.sample_ms / 1e3)
            results.append((batch, density, t))
            cells = " ".join(f"{t[n] * 1e3:9.3f}" if n in t else f"{'-':>9}" for n in names)
            ratios = "  ".join(f"{t[n] / t['cl_csr']:6.2f}x" if n in t else f"{'-':>7}"
                               for n in ["cl_dense", "numpy", "torch", "scipy", "cl_naive"])
            print(f"{batch:5d} {density:5.0%} {int(np.count_nonzero(w)):6d} | {cells} | {ratios}",
                  flush=True)
    if args.backward:
        print_backward(backend, args, dense_ok, rng)
    if args.plot:
        plot(results, args.plot, "cl_dense" if dense_ok else "numpy")


def print_backward(backend, args, dense_ok: bool, rng: np.random.Generator) -> None:
    """Table of the backward products: CSR kernels against the dense GEMM (or NumPy)."""
    dense = "dense" if dense_ok else "numpy"
    print(f"\nbackward, times in ms: dx = dy @ W (csr_matmul) and dW = dy^T x (csr_sddmm, only at "
          f"the nonzeros) against {'OpenCL gemm' if dense_ok else 'NumPy'}")
    print(f"{'batch':>5} {'dens':>5} | {'dx_csr':>8} {'dx_' + dense:>9} {'ratio':>6} | "
          f"{'dw_csr':>8} {'dw_' + dense:>9} {'ratio':>6}")
    for batch in args.batches:
        x = rng.standard_normal((batch, K)).astype(np.float32)
        for density in args.densities:
            t = measure(backward_methods(backend, x, sparse_weight(rng, density), dense_ok),
                        args.rounds, args.sample_ms / 1e3)
            print(f"{batch:5d} {density:5.0%} | {t['dx_csr'] * 1e3:8.3f} "
                  f"{t['dx_' + dense] * 1e3:9.3f} {t['dx_' + dense] / t['dx_csr']:5.2f}x | "
                  f"{t['dw_csr'] * 1e3:8.3f} {t['dw_' + dense] * 1e3:9.3f} "
                  f"{t['dw_' + dense] / t['dw_csr']:5.2f}x", flush=True)


def plot(results, path: str, dense_name: str) -> None:
    """Speedup of OpenCL CSR over the dense baseline against density, one line per batch."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        print("matplotlib is not installed: no plot")
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    speedups = []
    for batch in sorted({r[0] for r in results}):
        rows = [r for r in results if r[0] == batch]
        speedups += [r[2][dense_name] / r[2]["cl_csr"] for r in rows]
        ax.plot([100 * r[1] for r in rows], speedups[-len(rows):], marker="o",
                label=f"batch {batch}")
    ax.axhline(1.0, color="gray", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    lo, hi = min(speedups + [1.0]), max(speedups + [1.0])
    ax.set_yticks([t for t in (0.125, 0.25, 0.5, 1, 2, 4, 8, 16, 32) if lo / 2 < t < hi * 2])
    ax.set_xticks([100 * d for d in sorted({r[1] for r in results})])
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("density of W (% nonzeros)")
    ax.set_ylabel(f"time {dense_name} / time OpenCL CSR")
    ax.set_title(f"fc1 {O}x{K} forward: CSR speedup")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot written to {path}")


if __name__ == "__main__":
    main()
