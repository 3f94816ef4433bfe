/* Batch normalization over (N, P) per channel of x viewed as (N, C, P) (cl_nn.py).
 * Train/backward: per-tile partial statistics, merged per channel in a fixed order
 * (deterministic), then an elementwise pass; see batchnorm_tile_stats. */
#include "nn.h"

/* Train mode in three launches (cl_nn.py), each spread over the whole tensor instead of one
 * work-group per channel (16 channels of 128 x 1024 floats left ResNet-32's first stage with 16
 * long serial loops, three reads of x and group barriers; issue 20 measured ~3x faster so):
 * 1. batchnorm_tile_stats: work-item (t, c) takes the planes [t*npl, (t+1)*npl) of channel c (a
 *    tile of a few thousand floats, in L1 after its first pass) and writes its mean and its sum
 *    of squared deviations M2 (two passes over the tile: no cancellation of sum(x^2) - mean^2).
 * 2. batchnorm_stats_combine: one work-item per channel merges the T tiles in order (Chan et
 *    al.'s pairwise update: deterministic, stable), writes mean and inv_std and updates the
 *    running statistics (unbiased variance).
 * 3. batchnorm_normalize: xhat = (x - mean) * inv_std and y = xhat * gamma + beta, 8 floats per
 *    work-item. The backward pass has the same shape: per-tile sums of dy and dy * xhat, their
 *    per-channel merge (dgamma, dbeta and three dx coefficients), then dx elementwise. */

/* Bounds of tile (t, c): floats [p * ... ) of planes n0 <= n < n1 of channel c. */
#define BN_TILE(T_, C_)                                                                      \
    const uint t = get_global_id(0), c = get_global_id(1);                                   \
    if (t >= (T_) || c >= (C_)) return;                                                      \
    const uint n0 = t * npl, n1 = umin(N, n0 + npl)

/* Sum of a float8 as a float, in a fixed order. */
inline float bn_hsum8(const float8 v) {
    const float4 h = v.lo + v.hi;
    return (h.x + h.y) + (h.z + h.w);
}

/* Four independent float8 accumulators per sum (32 floats per iteration): one accumulator
 * chains every add on the previous one and ran at ~1/4 of the load rate. */
KERNEL void batchnorm_tile_stats(__global const float* x, const uint N, const uint C,
                                 const uint P, const uint npl, const uint T,
                                 __global float* part) {
    BN_TILE(T, C);
    float8 a0 = (float8)(0.0f), a1 = a0, a2 = a0, a3 = a0;
    float a = 0.0f;
    for (uint n = n0; n < n1; ++n) {
        const __global float* xp = x + ((size_t)n * C + c) * P;
        uint p = 0;
        for (; p + 32 <= P; p += 32) {
            a0 += LD8(xp + p); a1 += LD8(xp + p + 8);
            a2 += LD8(xp + p + 16); a3 += LD8(xp + p + 24);
        }
        for (; p + 8 <= P; p += 8) a0 += LD8(xp + p);
        for (; p < P; ++p) a += xp[p];
    }
    const float mean = (a + bn_hsum8((a0 + a1) + (a2 + a3))) / (float)((n1 - n0) * P);
    a0 = (float8)(0.0f); a1 = a0; a2 = a0; a3 = a0;
    a = 0.0f;
    for (uint n = n0; n < n1; ++n) {
        const __global float* xp = x + ((size_t)n * C + c) * P;
        uint p = 0;
        for (; p + 32 <= P; p += 32) {
            const float8 d0 = LD8(xp + p) - mean, d1 = LD8(xp + p + 8) - mean;
            const float8 d2 = LD8(xp + p + 16) - mean, d3 = LD8(xp + p + 24) - mean;
            a0 += d0 * d0; a1 += d1 * d1; a2 += d2 * d2; a3 += d3 * d3;
        }
        for (; p + 8 <= P; p += 8) {
            const float8 d = LD8(xp + p) - mean;
            a0 += d * d;
        }
        for (; p < P; ++p) {
            const float d = xp[p] - mean;
            a += d * d;
        }
    }
    part[2 * ((size_t)c * T + t)] = mean;
    part[2 * ((size_t)c * T + t) + 1] = a + bn_hsum8((a0 + a1) + (a2 + a3));
}

/* Per channel: merge the tiles' (mean, M2) in order; stat[c] = mean, stat[C + c] = inv_std,
 * inv_std_out[c] = inv_std; running r = (1 - momentum) * r + momentum * stat. */
KERNEL void batchnorm_stats_combine(__global const float* part, const uint N, const uint C,
                                    const uint P, const uint npl, const uint T,
                                    __global float* stat, __global float* inv_std_out,
                                    __global float* running_mean, __global float* running_var,
                                    const float momentum, const float eps) {
    const uint c = get_global_id(0);
    if (c >= C) return;
    float na = 0.0f, mean = 0.0f, m2 = 0.0f;
    for (uint t = 0; t < T; ++t) {
        const float nb = (float)((umin(N, (t + 1) * npl) - t * npl) * P);
        const float mb = part[2 * ((size_t)c * T + t)], m2b = part[2 * ((size_t)c * T + t) + 1];
        const float n = na + nb, delta = mb - mean;
        mean += delta * (nb / n);
        m2 += m2b + delta * delta * (na * nb / n);
        na = n;
    }
    const float count = (float)(N * P);
    const float var = m2 / count;
    const float inv_std = 1.0f / sqrt(var + eps);
    stat[c] = mean;
    stat[C + c] = inv_std;
    inv_std_out[c] = inv_std;
    const float unbiased = var * count / (count > 1.0f ? count - 1.0f : 1.0f);
    running_mean[c] = running_mean[c] * (1.0f - momentum) + momentum * mean;
    running_var[c] = running_var[c] * (1.0f - momentum) + momentum * unbiased;
}

/* Elementwise passes: work-item (c, n) runs along plane (n, c), 8 floats at a time, so the
 * channel comes from the grid (flat launches with a division per 8 floats, or one work-item per
 * 8 floats of a plane, ran 2-4x slower than relu on Intel's runtime). */
#define BN_PLANE                                                                             \
    const uint c = get_global_id(0), n = get_global_id(1);                                   \
    if (c >= C || n >= N) return;                                                            \
    const size_t o = ((size_t)n * C + c) * P;                                                \
    uint p = 0

/* xhat = (x - stat[c]) * stat[C + c], y = xhat * gamma[c] + beta[c], or max(y, 0) with relu
 * (a BatchNorm then ReLU fused: the ReLU's pass over the tensor saved). */
KERNEL void batchnorm_normalize(__global const float* x, __global const float* stat,
                                __global const float* gamma, __global const float* beta,
                                __global float* y, __global float* xhat, const uint N,
                                const uint C, const uint P, const int relu) {
    BN_PLANE;
    const float m = stat[c], s = stat[C + c], g = gamma[c], b = beta[c];
    const float lo = relu ? 0.0f : -INFINITY;
    for (; p + 8u <= P; p += 8u) {
        const float8 xh = (LD8(x + o + p) - m) * s;
        const float8 v = xh * g + b;
        ST8(xh, xhat + o + p);
        ST8(v < lo ? (float8)(lo) : v, y + o + p);
    }
    for (; p < P; ++p) {
        const float xh = (x[o + p] - m) * s;
        const float v = xh * g + b;
        xhat[o + p] = xh;
        y[o + p] = v < lo ? lo : v;
    }
}

/* dy, or dy where gate > 0 and 0 elsewhere (the ReLU before it in backward) when gated. */
#define BN_DY8(i) (gated ? (LD8(gate + (i)) > 0.0f ? LD8(dy + (i)) : (float8)(0.0f)) \
                         : LD8(dy + (i)))
#define BN_DY1(i) (gated ? (gate[i] > 0.0f ? dy[i] : 0.0f) : dy[i])

/* Backward step 1: sums of dy and dy * xhat over tile (t, c); gated: dy through the ReLU of
 * a fused BatchNorm + ReLU first (gate: its output). */
KERNEL void batchnorm_tile_grad_sums(__global const float* dy, __global const float* gate,
                                     const int gated, __global const float* xhat,
                                     const uint N, const uint C, const uint P, const uint npl,
                                     const uint T, __global float* part) {
    BN_TILE(T, C);
    float8 s0 = (float8)(0.0f), s1 = s0, u0 = s0, u1 = s0;
    float s = 0.0f, u = 0.0f;
    for (uint n = n0; n < n1; ++n) {
        const size_t base = ((size_t)n * C + c) * P;
        uint p = 0;
        for (; p + 16 <= P; p += 16) {
            const float8 d0 = BN_DY8(base + p), d1 = BN_DY8(base + p + 8);
            s0 += d0; s1 += d1;
            u0 += d0 * LD8(xhat + base + p); u1 += d1 * LD8(xhat + base + p + 8);
        }
        for (; p + 8 <= P; p += 8) {
            const float8 d = BN_DY8(base + p);
            s0 += d;
            u0 += d * LD8(xhat + base + p);
        }
        for (; p < P; ++p) {
            const float d = BN_DY1(base + p);
            s += d;
            u += d * xhat[base + p];
        }
    }
    part[2 * ((size_t)c * T + t)] = s + bn_hsum8(s0 + s1);
    part[2 * ((size_t)c * T + t) + 1] = u + bn_hsum8(u0 + u1);
}

/* Backward step 2, per channel: sum_dy and sum_dyx over the tiles in order; dgamma += sum_dyx,
 * dbeta += sum_dy; dx = coef[c] * dy + coef[C + c] * xhat + coef[2C + c], i.e.
 * gamma * inv_std / count * (count * dy - sum_dy - xhat * sum_dyx). */
KERNEL void batchnorm_grad_combine(__global const float* part, const uint C, const uint T,
                                   const float count, __global const float* inv_std,
                                   __global const float* gamma, __global float* dgamma,
                                   __global float* dbeta, __global float* coef) {
    const uint c = get_global_id(0);
    if (c >= C) return;
    float sum_dy = 0.0f, sum_dyx = 0.0f;
    for (uint t = 0; t < T; ++t) {
        sum_dy += part[2 * ((size_t)c * T + t)];
        sum_dyx += part[2 * ((size_t)c * T + t) + 1];
    }
    const float k = gamma[c] * inv_std[c] / count;
    coef[c] = k * count;
    coef[C + c] = -k * sum_dyx;
    coef[2 * C + c] = -k * sum_dy;
    dgamma[c] += sum_dyx;
    dbeta[c] += sum_dy;
}

/* Backward step 3: dx elementwise from the coefficients of step 2 (dy gated as in step 1). */
KERNEL void batchnorm_dx(__global const float* dy, __global const float* gate, const int gated,
                         __global const float* xhat, __global const float* coef,
                         __global float* dx, const uint N, const uint C, const uint P) {
    BN_PLANE;
    const float a = coef[c], k = coef[C + c], b = coef[2 * C + c];
    for (; p + 8u <= P; p += 8u)
        ST8(a * BN_DY8(o + p) + k * LD8(xhat + o + p) + b, dx + o + p);
    for (; p < P; ++p)
        dx[o + p] = a * BN_DY1(o + p) + k * xhat[o + p] + b;
}

/* Eval mode, step 1: coef[c] = gamma * inv_std, coef[C + c] = beta - mean * gamma * inv_std
 * from the running statistics. Global size C. */
KERNEL void batchnorm_eval_coeffs(__global const float* gamma, __global const float* beta,
                                  __global const float* running_mean,
                                  __global const float* running_var, __global float* coef,
                                  const uint C, const float eps) {
    const uint c = get_global_id(0);
    if (c >= C) return;
    const float inv_std = 1.0f / sqrt(running_var[c] + eps);
    coef[c] = gamma[c] * inv_std;
    coef[C + c] = beta[c] - running_mean[c] * gamma[c] * inv_std;
}

/* Eval mode, step 2: y = x * coef[c] + coef[C + c] for x viewed as (N*C, P) planes; global
 * size (ceil(P / 8), N*C). */
KERNEL void channel_affine_planes(__global const float* x, __global float* y,
                                  __global const float* coef, const uint P, const uint C,
                                  const uint NC) {
    const uint p0 = (uint)get_global_id(0) * 8u, r = get_global_id(1);
    if (r >= NC) return;
    const uint c = r % C;
    const float s = coef[c], t = coef[C + c];
    const size_t o = (size_t)r * P;
    if (p0 + 8 <= P) {
        ST8(LD8(x + o + p0) * s + t, y + o + p0);
    } else {
        for (uint p = p0; p < P; ++p) y[o + p] = x[o + p] * s + t;
    }
}

/* The same for P = 1, x viewed as (N, C) rows: global size (ceil(C / 4), N). */
KERNEL void channel_affine_cols(__global const float* x, __global float* y,
                                __global const float* coef, const uint C, const uint N) {
    const uint c0 = (uint)get_global_id(0) * 4u, n = get_global_id(1);
    if (n >= N) return;
    const size_t o = (size_t)n * C;
    if (c0 + 4 <= C) {
        ST4(LD4(x + o + c0) * LD4(coef + c0) + LD4(coef + C + c0), y + o + c0);
    } else {
        for (uint c = c0; c < C; ++c) y[o + c] = x[o + c] * coef[c] + coef[C + c];
    }
}
