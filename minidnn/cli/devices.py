"""``minidnn devices``: the OpenCL devices minidnn can use."""
from __future__ import annotations

import sys


def register(sub) -> None:
    d = sub.add_parser("devices",
                       help="list the OpenCL devices with their status (ok / unusable: reason)")
    d.set_defaults(func=cmd_devices)


def cmd_devices(args) -> int:
    """One line per OpenCL device with its status; '*' marks the one used by default.

    Exit 1 when no device is usable (each line says why, the last line says how to fix it).
    """
    from ..backend.devices import FIX_HINT, default_device, describe_device, survey_devices
    from ..errors import UnusableDeviceError
    statuses = survey_devices()
    try:
        chosen = default_device(statuses).index
    except UnusableDeviceError:
        chosen = None
    for s in statuses:
        status = "ok" if s.usable else f"unusable: {s.problem}"
        mark = "*" if s.index == chosen else " "
        print(f"{mark} {s.index}  {describe_device(s.device)}  [{status}]")
    if chosen is None:
        print(f"no usable OpenCL device: {FIX_HINT}", file=sys.stderr)
        return 1
    return 0
