/* Convolution lowering (cl_nn.py): im2row and its adjoint row2im, both writing contiguously.
 * x is (N, C, H, W); rows is (G, N*OH*OW, CG*KH*KW) with CG = C / G; row = output pixel,
 * column = (c, i, j). Row index of (g, n, oh, ow) is ((g*N + n)*OH + oh)*OW + ow. */
#include "nn.h"

/* Kernels im2row_<w> and row2im_<w> (CPU path) for the kernel widths w = k1, k3, k5, k7
 * compiled with a constant width, and w = kany for any width. */
#define KWC_CONST 1
#define KWC 1
#define SUFFIX k1
#include "im2row_kw.h"
#undef KWC
#undef SUFFIX
#define KWC 3
#define SUFFIX k3
#include "im2row_kw.h"
#undef KWC
#undef SUFFIX
#define KWC 5
#define SUFFIX k5
#include "im2row_kw.h"
#undef KWC
#undef SUFFIX
#define KWC 7
#define SUFFIX k7
#include "im2row_kw.h"
#undef KWC
#undef SUFFIX
#undef KWC_CONST
#define KWC_CONST 0
#define KWC KW
#define SUFFIX kany
#include "im2row_kw.h"


/* Adjoint (GPU path): one work-item per input pixel, global size (W, H, N*C); sums the row
 * entries of every window covering it in a fixed order (no atomics). */
KERNEL void row2im_px(__global const float* rows, __global float* dx, const int C, const int H,
                      const int W, const int KH, const int KW, const int stride, const int pad,
                      const int OH, const int OW, const int G, const int N) {
    const int w = get_global_id(0), h = get_global_id(1), nc = get_global_id(2);
    if (w >= W || h >= H || nc >= N * C) return;
    const int n = nc / C, c = nc - n * C, CG = C / G, g = c / CG, cl = c - g * CG;
    const int K = CG * KH * KW, hp = h + pad, wp = w + pad;
    /* windows oh with 0 <= hp - oh*stride < KH and 0 <= oh < OH; the same for ow */
    const int oh_lo = hp < KH ? 0 : (hp - KH) / stride + 1, oh_hi = imin(hp / stride + 1, OH);
    const int ow_lo = wp < KW ? 0 : (wp - KW) / stride + 1, ow_hi = imin(wp / stride + 1, OW);
    const __global float* r0 = rows + (long)(g * N + n) * OH * OW * K + (long)cl * KH * KW;
    float acc = 0.0f;
    for (int oh = oh_lo; oh < oh_hi; ++oh) {
        const __global float* r = r0 + (long)oh * OW * K + (hp - oh * stride) * KW + wp;
        for (int ow = ow_lo; ow < ow_hi; ++ow) acc += r[(long)ow * (K - stride)];
    }
    dx[((long)nc * H + h) * W + w] = acc;
}
