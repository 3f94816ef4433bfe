/* Elementwise kernels (cl_nn.py). Each work-item handles eight consecutive floats with float8
 * loads/stores; the last work-item finishes the tail (n not a multiple of 8) one by one.
 * Launch with global size ceil(n / 8). Pointers may alias (out = a is allowed). */
#include "nn.h"

#define I0 ((uint)get_global_id(0) * 8u)

KERNEL void relu(__global const float* x, __global float* y, const uint n) {
    const uint i0 = I0;
    if (i0 + 8 <= n) {
        const float8 v = LD8(x + i0);
        ST8(v < 0.0f ? (float8)(0.0f) : v, y + i0);
    } else {
        for (uint i = i0; i < n; ++i) y[i] = x[i] < 0.0f ? 0.0f : x[i];
    }
}

KERNEL void relu_backward(__global const float* dy, __global const float* y,
                          __global float* dx, const uint n) {
    const uint i0 = I0;
    if (i0 + 8 <= n) {
        ST8(LD8(y + i0) > 0.0f ? LD8(dy + i0) : (float8)(0.0f), dx + i0);
    } else {
        for (uint i = i0; i < n; ++i) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
    }
}

KERNEL void add(__global const float* a, __global const float* b, __global float* out,
                const uint n) {
    const uint i0 = I0;
    if (i0 + 8 <= n) {
        ST8(LD8(a + i0) + LD8(b + i0), out + i0);
    } else {
        for (uint i = i0; i < n; ++i) out[i] = a[i] + b[i];
    }
}

/* max(a + b, 0): a residual add and the ReLU after it in one pass. */
KERNEL void add_relu(__global const float* a, __global const float* b, __global float* out,
                     const uint n) {
    const uint i0 = I0;
    if (i0 + 8 <= n) {
        const float8 v = LD8(a + i0) + LD8(b + i0);
        ST8(v < 0.0f ? (float8)(0.0f) : v, out + i0);
    } else {
        for (uint i = i0; i < n; ++i) {
            const float v = a[i] + b[i];
            out[i] = v < 0.0f ? 0.0f : v;
        }
    }
}

KERNEL void mul(__global const float* a, __global const float* b, __global float* out,
                const uint n) {
    const uint i0 = I0;
    if (i0 + 8 <= n) {
        ST8(LD8(a + i0) * LD8(b + i0), out + i0);
    } else {
        for (uint i = i0; i < n; ++i) out[i] = a[i] * b[i];
    }
}

/* y += alpha * x */
KERNEL void axpy(const float alpha, __global const float* x, __global float* y, const uint n) {
    const uint i0 = I0;
    if (i0 + 8 <= n) {
        ST8(LD8(y + i0) + alpha * LD8(x + i0), y + i0);
    } else {
        for (uint i = i0; i < n; ++i) y[i] = y[i] + alpha * x[i];
    }
}

/* a *= s */
KERNEL void scale(__global float* a, const float s, const uint n) {
    const uint i0 = I0;
    if (i0 + 8 <= n) {
        ST8(LD8(a + i0) * s, a + i0);
    } else {
        for (uint i = i0; i < n; ++i) a[i] = a[i] * s;
    }
}

/* out = a / (sqrt(b) + eps): the adaptive step of RMSProp/Adam, 1/std of batch norm */
KERNEL void div_sqrt(__global const float* a, __global const float* b, __global float* out,
                     const float eps, const uint n) {
    const uint i0 = I0;
    if (i0 + 8 <= n) {
        ST8(LD8(a + i0) / (sqrt(LD8(b + i0)) + eps), out + i0);
    } else {
        for (uint i = i0; i < n; ++i) out[i] = a[i] / (sqrt(b[i]) + eps);
    }
}

KERNEL void soft_threshold(__global const float* w, __global float* out, const float t,
                           const uint n) {
    const uint i0 = I0;
    if (i0 + 8 <= n) {
        ST8(soft_threshold8(LD8(w + i0), t), out + i0);
    } else {
        for (uint i = i0; i < n; ++i) out[i] = soft_threshold1(w[i], t);
    }
}

/* Keep-mask from the counter-based hash: eight elements per work-item (the unrolled scalar
 * hashes vectorize), global size ceil(n / 8). */
KERNEL void dropout_mask(__global float* out, const uint seed, const uint counter,
                         const float p, const float keep_scale, const uint n) {
    const uint i0 = I0;
    if (i0 + 8 <= n) {
        float8 u;
        u.s0 = hash_uniform1(seed, counter, i0);
        u.s1 = hash_uniform1(seed, counter, i0 + 1);
        u.s2 = hash_uniform1(seed, counter, i0 + 2);
        u.s3 = hash_uniform1(seed, counter, i0 + 3);
        u.s4 = hash_uniform1(seed, counter, i0 + 4);
        u.s5 = hash_uniform1(seed, counter, i0 + 5);
        u.s6 = hash_uniform1(seed, counter, i0 + 6);
        u.s7 = hash_uniform1(seed, counter, i0 + 7);
        ST8(u >= p ? (float8)(keep_scale) : (float8)(0.0f), out + i0);
    } else {
        for (uint i = i0; i < n; ++i)
            out[i] = hash_uniform1(seed, counter, i) >= p ? keep_scale : 0.0f;
    }
}

/* x[r, l] += bias[l] for x viewed as (R, L) rows (linear layers: L = channels).
 * Global size (ceil(L / 4), R); four floats per work-item, tail handled one by one. */
KERNEL void add_bias_cols(__global float* x, __global const float* bias, const uint L,
                          const uint R) {
    const uint l0 = (uint)get_global_id(0) * 4u, r = get_global_id(1);
    if (r >= R) return;
    __global float* row = x + (size_t)r * L;
    if (l0 + 4 <= L) {
        ST4(LD4(row + l0) + LD4(bias + l0), row + l0);
    } else {
        for (uint l = l0; l < L; ++l) row[l] = row[l] + bias[l];
    }
}

/* x[n, c, p] += bias[c] for x viewed as (N*C, P) planes (convolutions: P = pixels).
 * Global size (ceil(P / 8), N*C). */
KERNEL void add_bias_planes(__global float* x, __global const float* bias, const uint P,
                            const uint C, const uint NC) {
    const uint p0 = (uint)get_global_id(0) * 8u, r = get_global_id(1);
    if (r >= NC) return;
    const float b = bias[r % C];
    __global float* plane = x + (size_t)r * P;
    if (p0 + 8 <= P) {
        ST8(LD8(plane + p0) + b, plane + p0);
    } else {
        for (uint p = p0; p < P; ++p) plane[p] = plane[p] + b;
    }
}
