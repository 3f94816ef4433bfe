/* Proximal operators beyond the fused soft-threshold of optim.cl: per-weight l1 strengths
 * (reweighted l1, Candes, Wakin & Boyd 2008) and the prox that uses them (cl_nn.py: l1_reweight,
 * soft_threshold_scaled). Eight floats per work-item (float8), the last work-item does the tail;
 * global ceil(n / 8). */
#include "nn.h"

#define I0 ((uint)get_global_id(0) * 8u)

/* r = s / (|w| + eps * s), s = the RMS of the nonzero w (sqrt(sumsq / (n - zeros)), both
 * reductions made on the device beforehand): ~1 for a typical weight, 1/eps for a zero. A
 * layer with no nonzero weight gets r = 1/eps everywhere. */
KERNEL void l1_reweight(__global const float* w, __global float* r,
                        __global const float* sumsq, __global const int* zeros,
                        const float eps, const uint n) {
    const uint alive = n - (uint)zeros[0];
    const float s = alive ? sqrt(sumsq[0] / (float)alive) : 0.0f;
    const uint i0 = I0;
    if (s == 0.0f) {
        for (uint i = i0; i < i0 + 8u && i < n; ++i) r[i] = 1.0f / eps;
        return;
    }
    if (i0 + 8 <= n) {
        ST8(s / (fabs(LD8(w + i0)) + eps * s), r + i0);
    } else {
        for (uint i = i0; i < n; ++i) r[i] = s / (fabs(w[i]) + eps * s);
    }
}

/* out = sign(w) * max(|w| - thr * r, 0): the soft-threshold with a per-weight scale. */
KERNEL void soft_threshold_scaled(__global const float* w, __global const float* r,
                                  __global float* out, const float thr, const uint n) {
    const uint i0 = I0;
    if (i0 + 8 <= n) {
        const float8 W = LD8(w + i0);
        const float8 t = thr * LD8(r + i0);
        ST8(W > t ? W - t : (W < -t ? W + t : (float8)(0.0f)), out + i0);
    } else {
        for (uint i = i0; i < n; ++i) {
            const float t = thr * r[i];
            out[i] = w[i] > t ? w[i] - t : (w[i] < -t ? w[i] + t : 0.0f);
        }
    }
}

/* out = w where |w| > thr, else 0: the prox of thr^2/2 ||w||_0 (hard threshold). */
KERNEL void hard_threshold(__global const float* w, __global float* out, const float thr,
                           const uint n) {
    const uint i0 = I0;
    if (i0 + 8 <= n) {
        const float8 W = LD8(w + i0);
        ST8(fabs(W) > thr ? W : (float8)(0.0f), out + i0);
    } else {
        for (uint i = i0; i < n; ++i) out[i] = fabs(w[i]) > thr ? w[i] : 0.0f;
    }
}

/* mask *= (w != 0): every current zero of w joins the mask's zeros (sticky zeros). */
KERNEL void mask_zeros(__global const float* w, __global float* mask, const uint n) {
    const uint i0 = I0;
    if (i0 + 8 <= n) {
        const float8 M = LD8(mask + i0);
        ST8(LD8(w + i0) == 0.0f ? (float8)(0.0f) : M, mask + i0);
    } else {
        for (uint i = i0; i < n; ++i) if (w[i] == 0.0f) mask[i] = 0.0f;
    }
}

/* The group soft-threshold (group lasso, l2,1): group g holds the n entries
 * w[g * gs + k * es], k < n (rows of a (rows, cols) view: gs = cols, es = 1; its columns:
 * gs = 1, es = cols), and becomes w_g * max(0, 1 - thr * sqrt(n) / ||w_g||), a zero group
 * staying zero. One work-item per group, which sums its squares in order (the result does not
 * depend on the work-group size). */
__kernel void group_soft_threshold(__global const float* w, __global float* out, const float thr,
                                   const uint groups, const uint n, const uint gs,
                                   const uint es) {
    const uint g = (uint)get_global_id(0);
    if (g >= groups) return;
    const size_t base = (size_t)g * gs;
    float ss = 0.0f;
    for (uint k = 0; k < n; ++k) {
        const float v = w[base + (size_t)k * es];
        ss += v * v;
    }
    const float norm = sqrt(ss);
    const float keep = norm > 0.0f ? fmax(0.0f, 1.0f - thr * sqrt((float)n) / norm) : 0.0f;
    for (uint k = 0; k < n; ++k) out[base + (size_t)k * es] = w[base + (size_t)k * es] * keep;
}
