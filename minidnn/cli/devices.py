"""``minidnn devices``: the OpenCL devices minidnn can use."""
from __future__ import annotations


def register(sub) -> None:
    d = sub.add_parser("devices", help="list the OpenCL devices minidnn can use")
    d.set_defaults(func=cmd_devices)


def cmd_devices(args) -> int:
    from ..backend.opencl_backend import describe_device, list_devices  # pyopencl is optional
    for index, device in list_devices():
        print(f"{index}  {describe_device(device)}")
    return 0
