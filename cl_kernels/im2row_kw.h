/* Template of the conv-lowering kernels for one kernel width, included by im2row.cl with
 * KWC = the width (a constant, so the inner loops unroll, or the runtime KW for any width) and
 * SUFFIX = the kernel name suffix. Layouts: x (N, C, H, W); rows (G, N*OH*OW, CG*KH*KW) with
 * CG = C/G, row ((g*N + n)*OH + oh)*OW + ow, column (c, i, j). Plain OpenCL C 1.2. */

#undef UNROLL_KW
#if KWC_CONST
#define UNROLL_KW UNROLL
#else
#define UNROLL_KW
#endif

#define IM2ROW_CAT_(a, b) a##b
#define IM2ROW_CAT(a, b) IM2ROW_CAT_(a, b)

/* One work-item per (oh, g*N + n): writes the OW consecutive rows of one output row
 * (OW * K floats in order). Global size (OH, G*N). */
KERNEL void IM2ROW_CAT(im2row_, SUFFIX)(
        __global const float* x, __global float* rows, const int C, const int H, const int W,
        const int KH, const int KW, const int stride, const int pad, const int OH,
        const int OW, const int G, const int N) {
    const int oh = get_global_id(0), gn = get_global_id(1);
    if (oh >= OH || gn >= G * N) return;
    const int g = gn / N, n = gn - g * N, CG = C / G;
    __global float* o = rows + (size_t)(gn * OH + oh) * OW * (size_t)(CG * KH * KWC);
    const int h0 = oh * stride - pad;
    const int i_lo = h0 < 0 ? -h0 : 0, i_hi = imin(KH, H - h0);
    /* x index of (n, g*CG, h0, 0); rows above the image are never read */
    const long x0 = ((long)n * C + (long)g * CG) * (H * W) + (long)h0 * W;
    for (int ow = 0; ow < OW; ++ow) {
        const int w0 = ow * stride - pad;
        if (w0 >= 0 && w0 + KWC <= W) {
            for (int c = 0; c < CG; ++c) {
                const long xc = x0 + (long)c * (H * W) + w0;
                for (int i = 0; i < KH; ++i, o += KWC) {
                    if (i < i_lo || i >= i_hi) {
                        UNROLL_KW for (int j = 0; j < KWC; ++j) o[j] = 0.0f;
                    } else {
                        const __global float* xr = x + (xc + i * W);
                        UNROLL_KW for (int j = 0; j < KWC; ++j) o[j] = xr[j];
                    }
                }
            }
        } else {
            for (int c = 0; c < CG; ++c) {
                const long xc = x0 + (long)c * (H * W) + w0;
                for (int i = 0; i < KH; ++i, o += KWC) {
                    const bool row_in = i >= i_lo && i < i_hi;
                    UNROLL_KW for (int j = 0; j < KWC; ++j) {
                        const int w = w0 + j;
                        o[j] = (row_in && w >= 0 && w < W) ? x[xc + i * W + j] : 0.0f;
                    }
                }
            }
        }
    }
}

/* Adjoint (CPU path), any stride: one work-item per image (g, n), global size G*N. It reads the
 * image's rows in memory order and adds each window into its own zeroed dx image (cache
 * resident; no other work-item writes there, fixed order: deterministic, no atomics). Updates
 * of the same pixel are C*KH*KW apart, so no store-to-load forwarding stalls. */
KERNEL void IM2ROW_CAT(row2im_, SUFFIX)(
        __global const float* rows, __global float* dx, const int C, const int H, const int W,
        const int KH, const int KW, const int stride, const int pad, const int OH,
        const int OW, const int G, const int N) {
    const int gn = get_global_id(0);
    if (gn >= G * N) return;
    const int g = gn / N, n = gn - g * N, CG = C / G, K = CG * KH * KWC, HW = H * W;
    __global float* d = dx + ((long)n * C + (long)g * CG) * HW;
    for (int p = 0; p < CG * HW; ++p) d[p] = 0.0f;
    const __global float* r = rows + (long)gn * OH * OW * K;
    for (int oh = 0; oh < OH; ++oh) {
        const int h0 = oh * stride - pad;
        const int i_lo = h0 < 0 ? -h0 : 0, i_hi = imin(KH, H - h0);
        for (int ow = 0; ow < OW; ++ow, r += K) {
            const int w0 = ow * stride - pad;
            const bool inner = w0 >= 0 && w0 + KWC <= W;
            for (int c = 0; c < CG; ++c) {
                const __global float* rc = r + c * KH * KWC;
                const long dc = (long)c * HW + (long)h0 * W + w0;  /* index of (h0, w0) */
                for (int i = i_lo; i < i_hi; ++i) {
                    const long di = dc + i * W;
                    const __global float* ri = rc + i * KWC;
                    if (inner) {
                        UNROLL_KW for (int j = 0; j < KWC; ++j) d[di + j] += ri[j];
                    } else {
                        UNROLL_KW for (int j = 0; j < KWC; ++j)
                            if (w0 + j >= 0 && w0 + j < W) d[di + j] += ri[j];
                    }
                }
            }
        }
    }
}
