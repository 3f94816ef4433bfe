"""Device health: the probe, auto-selection, refusals in one line, `minidnn devices`, ICD setup."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import DEVICE_STATUSES, NO_USABLE_DEVICE, OPENCL_DEVICES, REQUIRE_OPENCL, \
    UNUSABLE_DEVICES
from minidnn import cli
from minidnn.backend import NumpyBackend, cl_icd, resolve_backend
from minidnn.errors import NoOpenCLDeviceError, UnusableDeviceError

needs_devices = pytest.mark.skipif(not DEVICE_STATUSES, reason=NO_USABLE_DEVICE)
COMPILER_FAILURE = ("clBuildProgram failed: BUILD_PROGRAM_FAILURE - clBuildProgram failed\n\n"
                    "Build on <pyopencl.Device 'pthread-AMD EPYC'>:\n\n"
                    "error: unknown target CPU 'generic'\nnote: valid target CPU values are: ...")


def test_a_usable_device_exists_when_required():
    """.ci/run sets MINIDNN_REQUIRE_OPENCL=1: there, a run without OpenCL must not pass."""
    if not REQUIRE_OPENCL:
        pytest.skip("MINIDNN_REQUIRE_OPENCL is not set")
    assert OPENCL_DEVICES, NO_USABLE_DEVICE


@pytest.mark.parametrize("index", sorted(UNUSABLE_DEVICES) or [
    pytest.param(None, marks=pytest.mark.skip(reason="every OpenCL device found is usable"))])
def test_unusable_device_is_reported(index):
    """One skip per unusable device, with the compiler's reason (its tests are not run)."""
    pytest.skip(f"OpenCL device {index} unusable: {UNUSABLE_DEVICES[index]}")


@pytest.fixture
def broken(monkeypatch):
    """Make the probe of chosen devices fail like the wheel's PoCL on an unknown CPU.

    Returns a function taking the device indices to break; the probe cache starts empty.
    """
    from minidnn.backend import devices
    real_probe = devices._run_probe
    broken_ptrs: set[int] = set()

    def probe(device):
        if device.int_ptr in broken_ptrs:
            raise RuntimeError(COMPILER_FAILURE)
        real_probe(device)

    monkeypatch.setattr(devices, "_PROBED", {})
    monkeypatch.setattr(devices, "_run_probe", probe)
    monkeypatch.delenv("MINIDNN_DEVICE", raising=False)

    def break_devices(*indices: str) -> None:
        broken_ptrs.update(d.int_ptr for i, d in devices.list_devices() if i in indices)
        devices._PROBED.clear()
    return break_devices


@needs_devices
def test_failed_probe_gives_one_line_reason(broken):
    from minidnn.backend.devices import survey_devices
    first = DEVICE_STATUSES[0].index
    broken(first)
    status = {s.index: s for s in survey_devices()}[first]
    assert not status.usable
    assert status.problem == "cannot build or run kernels: error: unknown target CPU 'generic'"


@needs_devices
def test_auto_selection_skips_unusable_devices(broken):
    from minidnn.backend.devices import default_device, survey_devices
    if len(OPENCL_DEVICES) < 2:
        pytest.skip("needs two usable OpenCL devices")
    chosen = default_device(survey_devices()).index
    broken(chosen)
    assert default_device(survey_devices()).index != chosen
    chosen_device = {s.index: s.device for s in DEVICE_STATUSES}[chosen]
    assert resolve_backend("auto").device.int_ptr != chosen_device.int_ptr


@needs_devices
def test_no_usable_device_falls_back_to_numpy_with_reason(broken, capsys):
    broken(*[s.index for s in DEVICE_STATUSES])
    backend = resolve_backend("auto")
    assert isinstance(backend, NumpyBackend)
    note = capsys.readouterr().err.strip()
    assert len(note.splitlines()) == 1
    assert "unknown target CPU" in note and "pip install" in note


@needs_devices
def test_named_unusable_device_is_refused_in_one_line(broken, capsys):
    first = DEVICE_STATUSES[0].index
    broken(first)
    with pytest.raises(UnusableDeviceError, match="unknown target CPU"):
        resolve_backend("auto", first)
    # the CLI: one line, exit 2, before any data is read
    rc = cli.main(["train", "lenet5", "--device", first, "--steps", "5",
                   "--data-root", "/nonexistent"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1
    assert f"device {first}" in err and "unknown target CPU" in err and "pip install" in err


@needs_devices
def test_opencl_backend_with_none_usable_is_refused(broken):
    broken(*[s.index for s in DEVICE_STATUSES])
    with pytest.raises(UnusableDeviceError, match="no usable OpenCL device"):
        resolve_backend("opencl")


@needs_devices
def test_devices_command_marks_unusable(broken, capsys):
    first = DEVICE_STATUSES[0].index
    broken(first)
    rc = cli.main(["devices"])
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln[2:].startswith(first + " "))
    assert "[unusable: cannot build or run kernels: error: unknown target CPU" in line
    assert not line.startswith("*")
    assert rc == (0 if len(DEVICE_STATUSES) > 1 else 1)


@needs_devices
def test_devices_command_fails_when_none_usable(broken, capsys):
    broken(*[s.index for s in DEVICE_STATUSES])
    assert cli.main(["devices"]) == 1
    assert "no usable OpenCL device" in capsys.readouterr().err


def test_missing_device_is_an_error_not_a_numpy_run(capsys):
    """--device 9:9 with the default backend: an error, not a silent NumPy run."""
    with pytest.raises(NoOpenCLDeviceError):
        resolve_backend("auto", "9:9")
    assert cli.main(["train", "lenet5", "--device", "9:9", "--steps", "1"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_no_platform_falls_back_to_numpy(monkeypatch, capsys):
    from minidnn.backend import devices

    def no_platform():
        raise NoOpenCLDeviceError(f"no OpenCL platform found: {devices.FIX_HINT}")
    monkeypatch.setattr(devices, "list_devices", no_platform)
    monkeypatch.delenv("MINIDNN_DEVICE", raising=False)
    assert isinstance(resolve_backend("auto"), NumpyBackend)
    assert "no OpenCL platform found" in capsys.readouterr().err


# --------------------------------------------------------------------- pip runtime registration

def test_register_writes_vendors_folder_naming_the_library(tmp_path, monkeypatch):
    system = tmp_path / "system"
    system.mkdir()
    (system / "pocl.icd").write_text("libpocl.so.2\n")
    lib = tmp_path / "prefix" / "lib" / "libintelocl.so"
    lib.parent.mkdir(parents=True)
    lib.write_bytes(b"")
    monkeypatch.setattr(cl_icd, "_registered", None)
    monkeypatch.setattr(cl_icd.sys, "prefix", str(tmp_path / "prefix"))
    monkeypatch.setattr(cl_icd.sys, "exec_prefix", str(tmp_path / "prefix"))
    monkeypatch.setattr(cl_icd.site, "USER_BASE", None)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("OCL_ICD_VENDORS", str(system))
    monkeypatch.delenv("MINIDNN_OPENCL_REGISTER", raising=False)
    folder = cl_icd.register_pip_runtimes()
    assert folder is not None and os.environ["OCL_ICD_VENDORS"] == str(folder)
    icds = {f.name: f.read_text() for f in Path(folder).iterdir()}
    assert icds["pocl.icd"] == "libpocl.so.2\n"  # what the loader read before is kept
    assert icds["minidnn-libintelocl.icd"] == f"{lib.resolve()}\n"
    # a second process inheriting the variable gets the same folder, not a nested copy
    monkeypatch.setattr(cl_icd, "_registered", None)
    assert cl_icd.register_pip_runtimes() == folder


def test_register_is_a_no_op_without_pip_runtimes(tmp_path, monkeypatch):
    monkeypatch.setattr(cl_icd, "_registered", None)
    monkeypatch.setattr(cl_icd.sys, "prefix", str(tmp_path))
    monkeypatch.setattr(cl_icd.sys, "exec_prefix", str(tmp_path))
    monkeypatch.setattr(cl_icd.site, "USER_BASE", None)
    monkeypatch.setenv("OCL_ICD_VENDORS", "/keep/me")
    assert cl_icd.register_pip_runtimes() is None
    assert os.environ["OCL_ICD_VENDORS"] == "/keep/me"
