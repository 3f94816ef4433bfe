/* Template of the direct weight-gradient kernel for one constant filter width KWC (included by
 * conv.cl): conv2d_wgrad_k<KWC>, or conv2d_wgrad_k0 for any width. Plain OpenCL C 1.2.
 *
 * dW[o][c][ky][kx] = sum over images n and output pixels (oy, ox) of
 *     dy[n][o][oy][ox] * x[n][c][oy - pad + ky][ox - pad + kx]      (zero outside the image)
 * for a stride-1 convolution, without im2row rows or transposes. A work-item owns DW_OB output
 * channels x one input channel x one filter row ky x DW_NT filter columns (all KWC columns, or
 * one in the any-width kernel) and one chunk of images. It walks the chunk's output rows in
 * 8-pixel pieces: per piece it loads the input row piece once (lo, hi), forms the DW_NT
 * shifted float8 (swizzles), loads the DW_OB dy row pieces and does DW_OB * DW_NT vector
 * a*b + c into float8 accumulators (pixels in the lanes), summed across lanes at the end.
 * Each chunk writes its own partial dW (no atomics); conv2d_wgrad_reduce adds the chunks in
 * a fixed order, so results are deterministic. */

#ifndef CONV_WGRAD_HELPERS
#define CONV_WGRAD_HELPERS
inline float conv_hsum8(const float8 v) {
    const float4 s = v.lo + v.hi;
    const float2 t = s.lo + s.hi;
    return t.x + t.y;
}

/* dy row piece: 8 floats, or the first n of them and zeros (the last piece of a row) */
inline float8 conv_dy8(const __global float* p, const int n) {
    if (n == 8) return LD8(p);
    return (float8)(p[0], n > 1 ? p[1] : 0.0f, n > 2 ? p[2] : 0.0f, n > 3 ? p[3] : 0.0f,
                    n > 4 ? p[4] : 0.0f, n > 5 ? p[5] : 0.0f, n > 6 ? p[6] : 0.0f,
                    n > 7 ? p[7] : 0.0f);
}

/* accumulators a<r>_<k> of output channel r and filter column k */
#define DW_DECL(r) float8 a##r##_0 = 0.0f, a##r##_1 = 0.0f, a##r##_2 = 0.0f, a##r##_3 = 0.0f, \
                          a##r##_4 = 0.0f;
/* dy channel r beyond the group's last channel reads that one (its sums are not stored) */
#define DW_DY(r) conv_dy8(dq + (long)imin(r, rlast) * OHW, nout)
#define DW_FMA1(r) { const float8 d_ = DW_DY(r); a##r##_0 = d_ * s0 + a##r##_0; }
#define DW_FMA3(r) { const float8 d_ = DW_DY(r); a##r##_0 = d_ * s0 + a##r##_0;               \
        a##r##_1 = d_ * s1 + a##r##_1; a##r##_2 = d_ * s2 + a##r##_2; }
#define DW_FMA5(r) { const float8 d_ = DW_DY(r); a##r##_0 = d_ * s0 + a##r##_0;               \
        a##r##_1 = d_ * s1 + a##r##_1; a##r##_2 = d_ * s2 + a##r##_2;                        \
        a##r##_3 = d_ * s3 + a##r##_3; a##r##_4 = d_ * s4 + a##r##_4; }
#define DW_STORE(r) if (r <= rlast) {                                                        \
        __global float* q_ = pq + (long)r * CIG * T;                                         \
        q_[0] = conv_hsum8(a##r##_0);                                                        \
        if (DW_NT > 1) { q_[1] = conv_hsum8(a##r##_1); q_[2] = conv_hsum8(a##r##_2); }      \
        if (DW_NT > 3) { q_[3] = conv_hsum8(a##r##_3); q_[4] = conv_hsum8(a##r##_4); }      \
    }
#endif

#if KWC == 3
#define DW_OB 6
#define DW_NT 3
#define DW_FMA DW_FMA3
#elif KWC == 5
#define DW_OB 4
#define DW_NT 5
#define DW_FMA DW_FMA5
#else
#define DW_OB 8
#define DW_NT 1
#define DW_FMA DW_FMA1
#endif

/* One work-item: output channels oc0..oc0+DW_OB-1 of group g, in-group input channel c, filter
 * row ky, filter columns kx0..kx0+DW_NT-1, images n0..n0+nper-1. Global size
 * (CIG * KH * KW / DW_NT, G * ceil(COG / DW_OB), chunks). part: (chunks, G*COG, CIG, KH, KW). */
KERNEL void CONV_CAT(conv2d_wgrad_k, KWC)(__global const float* x, __global const float* dy,
                                          __global float* part, const int C, const int H,
                                          const int W, const int O, const int OH, const int OW,
                                          const int KH, const int KW, const int pad,
                                          const int G, const int N, const int nper) {
    const int KWE = KWC ? KWC : KW, COG = O / G, CIG = C / G, T = KH * KWE;
    const int nob = (COG + DW_OB - 1) / DW_OB, ncol = KWE / DW_NT;
    const int item = get_global_id(0), gob = get_global_id(1), chunk = get_global_id(2);
    if (item >= CIG * KH * ncol || gob >= G * nob || chunk * nper >= N) return;
    const int c = item / (KH * ncol), ky = item / ncol - c * KH;
    const int kx0 = (item - (item / ncol) * ncol) * DW_NT;
    const int g = gob / nob, oc0 = (gob - g * nob) * DW_OB, rlast = COG - 1 - oc0;
    const int OHW = OH * OW, n1 = imin(N, (chunk + 1) * nper);
    const int oy_lo = pad - ky > 0 ? pad - ky : 0, oy_hi = imin(OH, H + pad - ky);
    const bool aligned = W % 8 == 0 && pad <= 2;  /* CONV_ROW_ALIGNED applies */
    DW_DECL(0) DW_DECL(1) DW_DECL(2) DW_DECL(3) DW_DECL(4) DW_DECL(5) DW_DECL(6) DW_DECL(7)
    for (int n = chunk * nper; n < n1; ++n) {
        const __global float* xc = x + ((long)n * C + (long)g * CIG + c) * H * W;
        const __global float* dn = dy + ((long)n * O + (long)g * COG + oc0) * OHW;
        for (int oy = oy_lo; oy < oy_hi; ++oy) {
            const __global float* row = xc + (long)(oy - pad + ky) * W;
            for (int ox0 = 0; ox0 < OW; ox0 += 8) {
                const int ix0 = ox0 - pad + kx0, nout = imin(8, OW - ox0);
                const __global float* dq = dn + oy * OW + ox0;
#if KWC == 0
                const float8 s0 = (float8)(conv_ld(row, ix0, W), conv_ld(row, ix0 + 1, W),
                                           conv_ld(row, ix0 + 2, W), conv_ld(row, ix0 + 3, W),
                                           conv_ld(row, ix0 + 4, W), conv_ld(row, ix0 + 5, W),
                                           conv_ld(row, ix0 + 6, W), conv_ld(row, ix0 + 7, W));
#else
                float8 lo, hi = 0.0f;
                if (aligned) {
                    CONV_ROW_ALIGNED(row, ox0, W, pad, lo, hi);
                } else if (ix0 >= 0 && ix0 + 8 + KWC - 1 <= W) {
                    lo = LD8(row + ix0);
#if KWC == 3
                    hi.s01 = (float2)(row[ix0 + 8], row[ix0 + 9]);
#else
                    hi.s0123 = LD4(row + ix0 + 8);
#endif
                } else {
                    CONV_ROW_CHECKED(row, ix0, W, KWC == 5, lo, hi);
                }
                const float8 s0 = CONV_SHIFT0(lo, hi), s1 = CONV_SHIFT1(lo, hi);
                const float8 s2 = CONV_SHIFT2(lo, hi);
#if KWC == 5
                const float8 s3 = CONV_SHIFT3(lo, hi), s4 = CONV_SHIFT4(lo, hi);
#endif
#endif
                DW_FMA(0) DW_FMA(1) DW_FMA(2) DW_FMA(3)
#if DW_OB > 4
                DW_FMA(4) DW_FMA(5)
#endif
#if DW_OB > 6
                DW_FMA(6) DW_FMA(7)
#endif
            }
        }
    }
    __global float* pq = part + ((((long)chunk * G + g) * COG + oc0) * CIG + c) * T + ky * KWE
                         + kx0;
    DW_STORE(0) DW_STORE(1) DW_STORE(2) DW_STORE(3)
#if DW_OB > 4
    DW_STORE(4) DW_STORE(5)
#endif
#if DW_OB > 6
    DW_STORE(6) DW_STORE(7)
#endif
}

#undef DW_OB
#undef DW_NT
#undef DW_FMA
