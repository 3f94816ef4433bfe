/* Fused optimizer steps (cl_nn.py): one kernel per parameter per step does the update, then the
 * l1 soft-threshold when thr > 0, then w *= mask when has_mask (mask is a dummy otherwise).
 * Eight floats per work-item (float8), the last work-item does the tail; global ceil(n / 8). */
#include "nn.h"

#define I0 ((uint)get_global_id(0) * 8u)

/* prox and mask on eight lanes */
inline float8 finish8(float8 w, const float thr, const int has_mask,
                      __global const float* mask, const uint i) {
    if (thr > 0.0f) w = soft_threshold8(w, thr);
    if (has_mask) w *= LD8(mask + i);
    return w;
}

inline float finish1(float w, const float thr, const int has_mask, __global const float* mask,
                     const uint i) {
    if (thr > 0.0f) w = soft_threshold1(w, thr);
    if (has_mask) w *= mask[i];
    return w;
}

/* SGD, PyTorch convention: d = g + wd*w; v = mu*v + d; step = d + mu*v (nesterov) or v. */
KERNEL void sgd_update(__global float* w, __global const float* g, __global float* vel,
                       __global const float* mask, const float lr, const float mu,
                       const int use_velocity, const int nesterov, const float wd,
                       const float thr, const int has_mask, const uint n) {
    const uint i0 = I0;
    if (i0 + 8 <= n) {
        float8 W = LD8(w + i0);
        float8 d = LD8(g + i0) + wd * W;
        if (use_velocity) {
            const float8 V = LD8(vel + i0) * mu + d;
            ST8(V, vel + i0);
            d = nesterov ? d + mu * V : V;
        }
        ST8(finish8(W - lr * d, thr, has_mask, mask, i0), w + i0);
    } else {
        for (uint i = i0; i < n; ++i) {
            float d = g[i] + wd * w[i];
            if (use_velocity) {
                const float V = vel[i] * mu + d;
                vel[i] = V;
                d = nesterov ? d + mu * V : V;
            }
            w[i] = finish1(w[i] - lr * d, thr, has_mask, mask, i);
        }
    }
}

/* RMSProp: d = g + wd*w; s = alpha*s + (1-alpha)*d^2; w -= lr * d / (sqrt(s) + eps). */
KERNEL void rmsprop_update(__global float* w, __global const float* g, __global float* sq,
                           __global const float* mask, const float lr, const float alpha,
                           const float one_m_alpha, const float eps, const float wd,
                           const float thr, const int has_mask, const uint n) {
    const uint i0 = I0;
    if (i0 + 8 <= n) {
        const float8 W = LD8(w + i0);
        const float8 d = LD8(g + i0) + wd * W;
        const float8 S = LD8(sq + i0) * alpha + one_m_alpha * d * d;
        ST8(S, sq + i0);
        ST8(finish8(W - lr * d / (sqrt(S) + eps), thr, has_mask, mask, i0), w + i0);
    } else {
        for (uint i = i0; i < n; ++i) {
            const float d = g[i] + wd * w[i];
            const float S = sq[i] * alpha + one_m_alpha * d * d;
            sq[i] = S;
            w[i] = finish1(w[i] - lr * d / (sqrt(S) + eps), thr, has_mask, mask, i);
        }
    }
}

/* Adam: m = b1*m + (1-b1)*d; v = b2*v + (1-b2)*d^2; w -= lr * (m/bc1) / (sqrt(v/bc2) + eps)
 * with bc = 1 - beta^step computed on the host. */
KERNEL void adam_update(__global float* w, __global const float* g, __global float* m,
                        __global float* v, __global const float* mask, const float lr,
                        const float b1, const float one_m_b1, const float b2,
                        const float one_m_b2, const float bc1, const float bc2,
                        const float eps, const float wd, const float thr, const int has_mask,
                        const uint n) {
    const uint i0 = I0;
    if (i0 + 8 <= n) {
        const float8 W = LD8(w + i0);
        const float8 d = LD8(g + i0) + wd * W;
        const float8 M = LD8(m + i0) * b1 + one_m_b1 * d;
        const float8 V = LD8(v + i0) * b2 + one_m_b2 * d * d;
        ST8(M, m + i0);
        ST8(V, v + i0);
        const float8 step = lr * (M / bc1) / (sqrt(V / bc2) + eps);
        ST8(finish8(W - step, thr, has_mask, mask, i0), w + i0);
    } else {
        for (uint i = i0; i < n; ++i) {
            const float d = g[i] + wd * w[i];
            const float M = m[i] * b1 + one_m_b1 * d;
            const float V = v[i] * b2 + one_m_b2 * d * d;
            m[i] = M;
            v[i] = V;
            w[i] = finish1(w[i] - lr * (M / bc1) / (sqrt(V / bc2) + eps), thr, has_mask, mask, i);
        }
    }
}
