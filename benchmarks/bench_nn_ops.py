"""Kernel time of the OpenCL nn primitives at LeNet-5 batch-128 sizes (profiling events).

Prints min and median over ``--repeats`` calls and the effective bandwidth (bytes moved / min
time). Primitives that return a new array include its allocation: on PoCL a buffer whose pages
were never touched costs page faults inside the kernel (seen as slower medians).

Usage: ``python benchmarks/bench_nn_ops.py [--device 0:0] [--repeats 30]``
"""
from __future__ import annotations

import argparse
import time
from typing import Callable

import numpy as np

from minidnn.backend import get_backend


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default=None, help="OpenCL device (as for minidnn train)")
    p.add_argument("--repeats", type=int, default=30)
    args = p.parse_args(argv)
    b = get_backend("opencl", args.device, profiling=True)
    rng = np.random.default_rng(0)

    def rand(*shape: int):
        return b.from_host(rng.standard_normal(shape).astype(np.float32))

    def prof(name: str, fn: Callable[[], object], nbytes: int) -> None:
        fn()
        b.synchronize()
        b.kernel_times()  # drop the warm-up's events
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            fn()
            b.synchronize()
            wall = time.perf_counter() - t
            kernel = sum(seconds for _, seconds in b.kernel_times().values())
            times.append(kernel or wall)  # copies are not kernels: wall time
        times.sort()
        print(f"{name:46s} {1e3 * times[0]:8.3f} {1e3 * times[len(times) // 2]:8.3f} "
              f"{nbytes / times[0] / 1e9:8.1f}")

    print(f"{b.device_name}\n{'primitive':46s} {'min ms':>8} {'med ms':>8} {'GB/s':>8}")
    a = rand(128, 20, 24, 24)
    out = b.empty(a.shape)
    prof("copy 1.47M floats (reference)", lambda: b.copy_into(out, a), a.size * 8)
    x1, x2 = rand(128, 1, 28, 28), rand(128, 20, 12, 12)
    prof("im2row conv1 (128,1,28,28) k5 -> 73728x25", lambda: b.im2row(x1, 5, 5, 1, 0, 1),
         73728 * 25 * 4)
    prof("im2row conv2 (128,20,12,12) k5 -> 8192x500", lambda: b.im2row(x2, 5, 5, 1, 0, 1),
         8192 * 500 * 4)
    rows2 = b.im2row(x2, 5, 5, 1, 0, 1)
    prof("row2im conv2 8192x500 -> (128,20,12,12)",
         lambda: b.row2im(rows2, x2.shape, 5, 5, 1, 0, 1), rows2.size * 4)
    n = 430500
    w, g, m, v, mask = rand(n), rand(n), rand(n), rand(n), rand(n)
    prof("adam 430.5k floats", lambda: b.adam_update(w, g, m, v, 1e-3, .9, .999, 1e-8, 3, 0.0,
                                                     0.0, None), n * 4 * 7)
    prof("adam 430.5k floats + prox + mask",
         lambda: b.adam_update(w, g, m, v, 1e-3, .9, .999, 1e-8, 3, 0.0, 1e-4, mask), n * 4 * 8)
    prof("maxpool2d 2x2/2 (128,20,24,24)", lambda: b.maxpool2d(a, 2, 2, 0), a.size * 6)
    y, argmax = b.maxpool2d(a, 2, 2, 0)
    dy = rand(*y.shape)
    prof("maxpool2d_backward (128,20,24,24)",
         lambda: b.maxpool2d_backward(dy, argmax, a.shape), a.size * 6)
    bias = rand(20)
    prof("add_channel_bias (128,20,24,24)", lambda: b.add_channel_bias(a, bias), a.size * 8)
    prof("channel_sum (128,20,24,24)", lambda: b.channel_sum(a, bias), a.size * 4)
    prof("relu (128,20,24,24)", lambda: b.relu(a), a.size * 8)
    prof("sum 1.47M floats", lambda: b.sum(a), a.size * 4)


if __name__ == "__main__":
    main()
