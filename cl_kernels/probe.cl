// Device health probe: built and run once per device before minidnn uses it (backend/devices.py).
// A runtime that cannot generate code for this CPU fails here, in one short build, instead of
// deep inside the first real kernel.
__kernel void probe(__global float *x) {
    const size_t i = get_global_id(0);
    x[i] = x[i] * 2.0f + 1.0f;
}
