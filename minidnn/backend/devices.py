"""OpenCL devices: list them, check that each can build and run a kernel, pick one.

A device is *usable* when a tiny probe kernel (``cl_kernels/probe.cl``) builds, runs and gives
the right answer on it; the check runs once per device per process. Runtimes that list a device
but cannot generate code for this CPU (the PoCL inside the pyopencl wheel on CPUs newer than its
LLVM) are reported as unusable with the compiler's reason, and never picked automatically.
"""
from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass

import numpy as np

from ..errors import NoOpenCLDeviceError, UnusableDeviceError
from .cl_icd import register_pip_runtimes

register_pip_runtimes()  # before pyopencl first lists platforms

try:  # pyopencl is an optional extra: the NumPy backend works without it
    import pyopencl as cl
except ImportError:  # pragma: no cover - exercised only where pyopencl is absent
    cl = None

FIX_HINT = ("install a working OpenCL CPU runtime: `pip install -e \".[cpu]\"` in a minidnn "
            "checkout (Intel's OpenCL CPU runtime, any x86-64 CPU), or `apt-get install "
            "pocl-opencl-icd` on Debian/Ubuntu; or use --backend numpy")

# CPU runtimes in order of preference when several are usable; matched against
# ``runtime_label``. From benchmarks/bench_train.py and bench_sparse_train.py on a quiet Zen 4
# (docs/results.md, issue 20, "end of session 7"): with issue 20's per-runtime kernels, Intel's
# runtime trains all four zoo models 1.04-1.29x as fast as PoCL 3.1 and the README's main job
# 1.38x (issue 11 had measured the reverse with the kernels of the time).
CPU_RUNTIME_PREFERENCE = (r"Intel", r"Portable Computing Language (?:[4-9]|3\.[1-9])",
                          r"Portable Computing Language")


@dataclass(frozen=True)
class DeviceStatus:
    """One OpenCL device as minidnn sees it: its index, the device, and why it is unusable."""
    index: str                 # 'platform:device', as --device takes it
    device: "cl.Device"
    problem: str | None = None  # None when the probe kernel built, ran and was right

    @property
    def usable(self) -> bool:
        return self.problem is None


def list_devices() -> list[tuple[str, "cl.Device"]]:
    """Every OpenCL device visible, usable or not, as ('platform:device' index, device)."""
    if cl is None:
        raise NoOpenCLDeviceError(f"pyopencl is not installed: {FIX_HINT}")
    try:
        platforms = cl.get_platforms()
    except cl.Error as exc:  # e.g. PLATFORM_NOT_FOUND_KHR when no ICD is registered
        raise NoOpenCLDeviceError(f"no OpenCL platform found ({exc}): {FIX_HINT}") from exc
    found = []
    for pi, platform in enumerate(platforms):
        try:
            devices = platform.get_devices()
        except cl.Error:
            continue
        found.extend((f"{pi}:{di}", d) for di, d in enumerate(devices))
    if not found:
        raise NoOpenCLDeviceError(f"OpenCL platforms exist but expose no device: {FIX_HINT}")
    return found


def describe_device(device: "cl.Device") -> str:
    """Name, kind, platform (with its version), memory and compute units, on one line."""
    kind = cl.device_type.to_string(device.type)
    return (f"{device.name.strip()} [{kind}] on {runtime_label(device)} "
            f"({device.global_mem_size // 2**20} MiB, {device.max_compute_units} CUs)")


def runtime_label(device: "cl.Device") -> str:
    """The OpenCL runtime behind ``device``: platform name and driver version."""
    return f"{device.platform.name.strip()} {device.driver_version.strip()}"


def _first_error_line(text: str) -> str:
    """The compiler's reason in one line: its first 'error' line, else its first line."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    for ln in lines:
        if "error" in ln.lower() and not ln.lower().startswith(("build on", "(options")):
            return ln[:200]
    return (lines[0] if lines else "unknown failure")[:200]


_PROBED: dict[int, str | None] = {}


def _run_probe(device: "cl.Device") -> None:
    """Build ``probe.cl`` on ``device``, run it on 64 floats and check the result."""
    from .cl_programs import kernel_dir
    context = cl.Context([device])
    queue = cl.CommandQueue(context)
    source = (kernel_dir() / "probe.cl").read_text()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # compiler chatter: the probe reports failures itself
        program = cl.Program(context, source).build()
    host = np.arange(64, dtype=np.float32)
    buf = cl.Buffer(context, cl.mem_flags.READ_WRITE | cl.mem_flags.COPY_HOST_PTR, hostbuf=host)
    program.probe(queue, host.shape, None, buf)
    out = np.empty_like(host)
    cl.enqueue_copy(queue, out, buf)
    queue.finish()
    if not np.array_equal(out, host * 2 + 1):
        raise RuntimeError("the probe kernel ran but computed wrong results")


def device_problem(device: "cl.Device") -> str | None:
    """Why ``device`` is unusable (one line), or None when the probe passed. Cached per process."""
    key = device.int_ptr
    if key not in _PROBED:
        try:
            _run_probe(device)
            _PROBED[key] = None
        except Exception as exc:  # any failure of the runtime makes the device unusable
            _PROBED[key] = f"cannot build or run kernels: {_first_error_line(exc)}"
    return _PROBED[key]


def survey_devices() -> list[DeviceStatus]:
    """Every visible device with its probe result."""
    return [DeviceStatus(index, d, device_problem(d)) for index, d in list_devices()]


def _preference(status: DeviceStatus) -> tuple:
    """Sort key: GPUs first, then CPU runtimes by CPU_RUNTIME_PREFERENCE, then list order."""
    is_gpu = bool(status.device.type & cl.device_type.GPU)
    label = runtime_label(status.device)
    rank = next((i for i, pattern in enumerate(CPU_RUNTIME_PREFERENCE)
                 if re.search(pattern, label)), len(CPU_RUNTIME_PREFERENCE))
    return (not is_gpu, rank)


def default_device(statuses: list[DeviceStatus]) -> DeviceStatus:
    """The device auto-selection picks: the first usable GPU, else the best usable CPU device."""
    usable = [s for s in statuses if s.usable]
    if not usable:
        reasons = "; ".join(f"{s.index} {s.device.name.strip()}: {s.problem}" for s in statuses)
        raise UnusableDeviceError(f"no usable OpenCL device ({reasons}): {FIX_HINT}")
    return min(usable, key=_preference)  # min is stable: list order breaks ties


def _matches(spec: str, status: DeviceStatus) -> bool:
    d = status.device
    if spec == status.index:
        return True
    if spec in ("gpu", "cpu", "accelerator"):
        return bool(d.type & getattr(cl.device_type, spec.upper()))
    return spec in d.name.lower() or spec in d.platform.name.lower()


def select_device(spec: str | None = None) -> "cl.Device":
    """The device for ``spec`` (or ``$MINIDNN_DEVICE``): 'gpu', 'cpu', 'P:D' or a name substring.

    Without a spec, the default device (see ``default_device``). A spec that matches only
    unusable devices raises UnusableDeviceError with the reason and the fix; one that matches
    nothing raises NoOpenCLDeviceError listing what exists.
    """
    spec = spec if spec is not None else os.environ.get("MINIDNN_DEVICE") or None
    statuses = survey_devices()
    if spec is None:
        return default_device(statuses).device
    s = spec.strip().lower()
    matching = [st for st in statuses if _matches(s, st)]
    usable = [st for st in matching if st.usable]
    if usable:
        return min(usable, key=_preference).device if s in ("cpu", "gpu") else usable[0].device
    if matching:
        st = matching[0]
        raise UnusableDeviceError(f"OpenCL device {st.index} ({st.device.name.strip()} on "
                                  f"{st.device.platform.name.strip()}) is unusable: "
                                  f"{st.problem}; {FIX_HINT}")
    names = ", ".join(f"{st.index} {st.device.name.strip()}" for st in statuses)
    raise NoOpenCLDeviceError(f"no OpenCL device matches {spec!r}; available: {names}")
