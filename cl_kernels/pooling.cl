/* 2-D max/avg pooling and their adjoints (cl_nn.py). x is (N, C, H, W), y is (N, C, OH, OW).
 * Forward: one work-item per output row (oh, n*C + c), global size (OH, N*C), writing OW
 * outputs in order. Adjoints: one work-item per (n, c) plane, global size N*C, which zeroes
 * its plane and adds its windows in output order (no other work-item writes there: no
 * atomics, deterministic; for max pooling the same order as NumPy's np.add.at). */
#include "nn.h"

/* Max over the window; padding never wins. argmax = h*W + w of the first maximum in window
 * order (like np.argmax), the window's first cell when every value is -inf. */
KERNEL void maxpool2d(__global const float* x, __global float* y, __global int* argmax,
                      const int H, const int W, const int OH, const int OW, const int k,
                      const int stride, const int pad, const int NC) {
    const int oh = get_global_id(0), nc = get_global_id(1);
    if (oh >= OH || nc >= NC) return;
    const __global float* xp = x + (long)nc * H * W;
    const long o0 = ((long)nc * OH + oh) * OW;
    const int h0 = oh * stride - pad;
    const int i_lo = h0 < 0 ? -h0 : 0, i_hi = imin(k, H - h0);
    for (int ow = 0; ow < OW; ++ow) {
        const int w0 = ow * stride - pad;
        const int j_lo = w0 < 0 ? -w0 : 0, j_hi = imin(k, W - w0);
        float best = -INFINITY;
        int arg = h0 * W + w0;
        for (int i = i_lo; i < i_hi; ++i) {
            const int row = (h0 + i) * W + w0;
            for (int j = j_lo; j < j_hi; ++j) {  /* branch-free: random data mispredicts */
                const float v = xp[row + j];
                const bool gt = v > best;
                best = gt ? v : best;
                arg = gt ? row + j : arg;
            }
        }
        y[o0 + ow] = best;
        argmax[o0 + ow] = arg;
    }
}

/* Max pooling for k = stride = 2, pad = 0 (the common case), four outputs per step from two
 * float8 row pieces; global size (OH, N*C). Same results as maxpool2d. */
KERNEL void maxpool2d_k2s2(__global const float* x, __global float* y, __global int* argmax,
                           const int H, const int W, const int OH, const int OW,
                           const int NC) {
    const int oh = get_global_id(0), nc = get_global_id(1);
    if (oh >= OH || nc >= NC) return;
    const int r0 = 2 * oh * W;
    const __global float* x0 = x + (long)nc * H * W + r0;
    const __global float* x1 = x0 + W;
    const long o0 = ((long)nc * OH + oh) * OW;
    int ow = 0;
    for (; ow + 4 <= OW; ow += 4) {
        const float8 u = LD8(x0 + 2 * ow), v = LD8(x1 + 2 * ow);
        const int4 i00 = (int4)(r0 + 2 * ow) + (int4)(0, 2, 4, 6);
        float4 best = u.even;
        int4 arg = i00;
        int4 gt = u.odd > best;
        best = gt ? u.odd : best;
        arg = gt ? i00 + 1 : arg;
        gt = v.even > best;
        best = gt ? v.even : best;
        arg = gt ? i00 + W : arg;
        gt = v.odd > best;
        best = gt ? v.odd : best;
        arg = gt ? i00 + W + 1 : arg;
        ST4(best, y + o0 + ow);
        __global int* a = argmax + o0 + ow;
        a[0] = arg.s0; a[1] = arg.s1; a[2] = arg.s2; a[3] = arg.s3;
    }
    for (; ow < OW; ++ow) {
        const int c0 = 2 * ow;
        float best = x0[c0];
        int arg = r0 + c0;
        if (x0[c0 + 1] > best) { best = x0[c0 + 1]; arg = r0 + c0 + 1; }
        if (x1[c0] > best) { best = x1[c0]; arg = r0 + W + c0; }
        if (x1[c0 + 1] > best) { best = x1[c0 + 1]; arg = r0 + W + c0 + 1; }
        y[o0 + ow] = best;
        argmax[o0 + ow] = arg;
    }
}

/* Max-pool adjoint for any window geometry: dx[argmax[o]] += dy[o] within each plane. */
KERNEL void maxpool2d_backward(__global const float* dy, __global const int* argmax,
                               __global float* dx, const int HW, const int OHW,
                               const int NC) {
    const int nc = get_global_id(0);
    if (nc >= NC) return;
    __global float* d = dx + (long)nc * HW;
    const __global float* g = dy + (long)nc * OHW;
    const __global int* a = argmax + (long)nc * OHW;
    for (int i = 0; i < HW; ++i) d[i] = 0.0f;
    for (int o = 0; o < OHW; ++o) {
        const int t = a[o];
        if (t >= 0 && t < HW) d[t] += g[o];
    }
}

/* Mean over the k*k window; zero padding counts in the divisor. */
KERNEL void avgpool2d(__global const float* x, __global float* y, const int H, const int W,
                      const int OH, const int OW, const int k, const int stride, const int pad,
                      const int NC) {
    const int oh = get_global_id(0), nc = get_global_id(1);
    if (oh >= OH || nc >= NC) return;
    const __global float* xp = x + (long)nc * H * W;
    const long o0 = ((long)nc * OH + oh) * OW;
    const int h0 = oh * stride - pad;
    const int i_lo = h0 < 0 ? -h0 : 0, i_hi = imin(k, H - h0);
    const float kk = (float)(k * k);
    for (int ow = 0; ow < OW; ++ow) {
        const int w0 = ow * stride - pad;
        const int j_lo = w0 < 0 ? -w0 : 0, j_hi = imin(k, W - w0);
        float acc = 0.0f;
        for (int i = i_lo; i < i_hi; ++i) {
            const int row = (h0 + i) * W + w0;
            for (int j = j_lo; j < j_hi; ++j) acc += xp[row + j];
        }
        y[o0 + ow] = acc / kk;
    }
}

/* Avg-pool adjoint: each window adds dy / (k*k) to its in-image pixels. */
KERNEL void avgpool2d_backward(__global const float* dy, __global float* dx, const int H,
                               const int W, const int OH, const int OW, const int k,
                               const int stride, const int pad, const int NC) {
    const int nc = get_global_id(0);
    if (nc >= NC) return;
    __global float* d = dx + (long)nc * H * W;
    const __global float* g = dy + (long)nc * OH * OW;
    const float kk = (float)(k * k);
    for (int i = 0; i < H * W; ++i) d[i] = 0.0f;
    for (int oh = 0; oh < OH; ++oh) {
        const int h0 = oh * stride - pad;
        const int i_lo = h0 < 0 ? -h0 : 0, i_hi = imin(k, H - h0);
        for (int ow = 0; ow < OW; ++ow) {
            const int w0 = ow * stride - pad;
            const int j_lo = w0 < 0 ? -w0 : 0, j_hi = imin(k, W - w0);
            const float share = g[oh * OW + ow] / kk;
            for (int i = i_lo; i < i_hi; ++i) {
                const int row = (h0 + i) * W + w0;
                for (int j = j_lo; j < j_hi; ++j) d[row + j] += share;
            }
        }
    }
}
