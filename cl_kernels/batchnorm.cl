/* Batch normalization over (N, P) per channel of x viewed as (N, C, P) (cl_nn.py).
 * Train/backward: one work-group per channel (global size C * LS) computes the channel's
 * statistics with fixed-order tree reductions (deterministic), then writes the channel. */
#include "nn.h"

/* y = xhat * gamma + beta with xhat = (x - mean) * inv_std from two-pass batch statistics;
 * running stats r = (1 - momentum) * r + momentum * stat (unbiased variance). Each lane works
 * on its share of the channel (CHANNEL_LANES), float4 at a time. */
KERNEL void batchnorm_train(__global const float* x, __global const float* gamma,
                            __global const float* beta, __global float* running_mean,
                            __global float* running_var, __global float* y,
                            __global float* xhat, __global float* inv_std_out,
                            const uint N, const uint C, const uint P, const uint lp_log2,
                            const float momentum, const float eps) {
    __local float scratch[RED_LS_MAX];
    const uint c = get_group_id(0);
    const uint count = N * P;
    const float mean = group_sum_f(lane_channel_sum(x, N, C, P, c, lp_log2), scratch)
                       / (float)count;
    CHANNEL_LANES(P, lp_log2);
    float4 a4 = (float4)(0.0f);
    float a = 0.0f;
    for (uint n = n0; n < N; n += nstep) {
        const __global float* xp = x + ((size_t)n * C + c) * P;
        uint p = pb;
        for (; p + 4 <= pe; p += 4) {
            const float4 d = LD4(xp + p) - mean;
            a4 += d * d;
        }
        for (; p < pe; ++p) {
            const float d = xp[p] - mean;
            a += d * d;
        }
    }
    const float var = group_sum_f(a + ((a4.x + a4.y) + (a4.z + a4.w)), scratch) / (float)count;
    const float inv_std = 1.0f / sqrt(var + eps);
    const float g = gamma[c], b = beta[c];
    for (uint n = n0; n < N; n += nstep) {
        const size_t base = ((size_t)n * C + c) * P;
        uint p = pb;
        for (; p + 4 <= pe; p += 4) {
            const float4 xh = (LD4(x + base + p) - mean) * inv_std;
            ST4(xh, xhat + base + p);
            ST4(xh * g + b, y + base + p);
        }
        for (; p < pe; ++p) {
            const float xh = (x[base + p] - mean) * inv_std;
            xhat[base + p] = xh;
            y[base + p] = xh * g + b;
        }
    }
    if (get_local_id(0) == 0) {
        const float unbiased = var * (float)count / (float)(count > 1 ? count - 1 : 1);
        inv_std_out[c] = inv_std;
        running_mean[c] = running_mean[c] * (1.0f - momentum) + momentum * mean;
        running_var[c] = running_var[c] * (1.0f - momentum) + momentum * unbiased;
    }
}

/* dx = gamma * inv_std / count * (count * dy - sum(dy) - xhat * sum(dy * xhat));
 * dgamma[c] += sum(dy * xhat), dbeta[c] += sum(dy). */
KERNEL void batchnorm_backward(__global const float* dy, __global const float* xhat,
                               __global const float* inv_std, __global const float* gamma,
                               __global float* dgamma, __global float* dbeta,
                               __global float* dx, const uint N, const uint C, const uint P,
                               const uint lp_log2) {
    __local float scratch[RED_LS_MAX];
    const uint c = get_group_id(0);
    const float count = (float)(N * P);
    CHANNEL_LANES(P, lp_log2);
    float4 s4 = (float4)(0.0f), t4 = (float4)(0.0f);
    float s = 0.0f, t = 0.0f;
    for (uint n = n0; n < N; n += nstep) {
        const size_t base = ((size_t)n * C + c) * P;
        uint p = pb;
        for (; p + 4 <= pe; p += 4) {
            const float4 d = LD4(dy + base + p);
            s4 += d;
            t4 += d * LD4(xhat + base + p);
        }
        for (; p < pe; ++p) {
            const float d = dy[base + p];
            s += d;
            t += d * xhat[base + p];
        }
    }
    const float sum_dy = group_sum_f(s + ((s4.x + s4.y) + (s4.z + s4.w)), scratch);
    const float sum_dyx = group_sum_f(t + ((t4.x + t4.y) + (t4.z + t4.w)), scratch);
    const float k = gamma[c] * inv_std[c] / count;
    for (uint n = n0; n < N; n += nstep) {
        const size_t base = ((size_t)n * C + c) * P;
        uint p = pb;
        for (; p + 4 <= pe; p += 4)
            ST4(k * (count * LD4(dy + base + p) - sum_dy
                         - LD4(xhat + base + p) * sum_dyx), dx + base + p);
        for (; p < pe; ++p)
            dx[base + p] = k * (count * dy[base + p] - sum_dy - xhat[base + p] * sum_dyx);
    }
    if (get_local_id(0) == 0) {
        dgamma[c] += sum_dyx;
        dbeta[c] += sum_dy;
    }
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
