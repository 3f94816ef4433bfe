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
 * a fixed order, so results are deterministic.
 *
 * The fixed-width kernels (3, 5) choose how a piece's input row is read outside their innermost
 * loop, so that loop has no branches but its own (issue 20, bench_wgrad_ab.py):
 * - "same" padding (pad (KWC-1)/2, as in every zoo layer) on rows a multiple of 8 wide: row by
 *   row, rolling the row's aligned 8-column pieces (before, at, after): one aligned load and
 *   KWC - 1 swizzles per piece, no bounds checks (1.0-1.3x the two walks below under Intel's
 *   runtime, 1.3-1.6x under PoCL);
 * - other rows with pieces wholly inside them: row by row, the border pieces and the inner
 *   ones in separate loops;
 * - narrower rows (one or two pieces, all at a border): piece by piece, each piece down the
 *   image's rows with one kind of load (aligned, or checked). */

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
/* dy row piece of channel r: nout lanes (DW_DY) or a whole piece (DW_DYF); channel r beyond
 * the group's last channel reads that one (its sums are not stored) */
#define DW_DY(r) conv_dy8(dq + (long)imin(r, rlast) * OHW, nout)
#define DW_DYF(r) LD8(dq + (long)imin(r, rlast) * OHW)
#define DW_FMA1(r, DYL) { const float8 d_ = DYL(r); a##r##_0 = d_ * s0 + a##r##_0; }
#define DW_FMA3(r, DYL) { const float8 d_ = DYL(r); a##r##_0 = d_ * s0 + a##r##_0;          \
        a##r##_1 = d_ * s1 + a##r##_1; a##r##_2 = d_ * s2 + a##r##_2; }
#define DW_FMA5(r, DYL) { const float8 d_ = DYL(r); a##r##_0 = d_ * s0 + a##r##_0;          \
        a##r##_1 = d_ * s1 + a##r##_1; a##r##_2 = d_ * s2 + a##r##_2;                        \
        a##r##_3 = d_ * s3 + a##r##_3; a##r##_4 = d_ * s4 + a##r##_4; }
#define DW_STORE(r) if (r <= rlast) {                                                        \
        __global float* q_ = pq + (long)r * CIG * T;                                         \
        q_[0] = conv_hsum8(a##r##_0);                                                        \
        if (DW_NT > 1) { q_[1] = conv_hsum8(a##r##_1); q_[2] = conv_hsum8(a##r##_2); }      \
        if (DW_NT > 3) { q_[3] = conv_hsum8(a##r##_3); q_[4] = conv_hsum8(a##r##_4); }      \
    }

/* The row piece lo, hi under the piece at ox0 (ix0 = ox0 - pad + kx0) of input row `row`:
 * wholly inside the row, aligned loads (W % 8 == 0, pad <= 2), or per-lane checks */
#define DW_LOAD_INNER { lo = LD8(row + ix0); DW_LOAD_HI }
#define DW_LOAD_ALIGNED CONV_ROW_ALIGNED(row, ox0, W, pad, lo, hi);
#define DW_LOAD_CHECKED CONV_ROW_CHECKED(row, ix0, W, KWC == 5, lo, hi);
/* One piece of the fixed-width kernels: input row `row`, dy row pieces at dq */
#define DW_STEP(LOAD, DYL) {                                                                 \
        float8 lo, hi = 0.0f;                                                                 \
        LOAD                                                                                  \
        const float8 s0 = CONV_SHIFT0(lo, hi), s1 = CONV_SHIFT1(lo, hi);                    \
        const float8 s2 = CONV_SHIFT2(lo, hi);                                                \
        DW_SHIFT34                                                                            \
        DW_FMA(0, DYL) DW_FMA(1, DYL) DW_FMA(2, DYL) DW_FMA(3, DYL) DW_FMA_HI(DYL)           \
    }
/* a piece at a row's border or end (dy row at drow): aligned loads where they apply, else
 * checked ones */
#define DW_STEP_BORDER {                                                                     \
        const int ix0 = ox0 - pad + kx0, nout = imin(8, OW - ox0);                            \
        const __global float* dq = drow + ox0;                                                \
        if (nout == 8 && aligned) DW_STEP(DW_LOAD_ALIGNED, DW_DYF)                           \
        else DW_STEP(DW_LOAD_CHECKED, DW_DY)                                                  \
    }
/* the piece at ox0 down the rows oy_lo..oy_hi-1 of one image, with one kind of load */
#define DW_DOWN(LOAD, DYL) {                                                                 \
        const __global float* row = xr; const __global float* dq = dr + ox0;                 \
        for (int oy = oy_lo; oy < oy_hi; ++oy, row += W, dq += OW) DW_STEP(LOAD, DYL)        \
    }
#endif

#ifndef DW_OB3
#define DW_OB3 8  /* k3: 24 accumulators; 16-channel multiples have no idle rows */
#endif
#ifndef DW_OB5
#define DW_OB5 4  /* k5: 20 accumulators */
#endif
#if KWC == 3
#define DW_OB DW_OB3
#define DW_NT 3
#define DW_FMA DW_FMA3
#define DW_SHIFT34
#define DW_LOAD_HI hi.s01 = (float2)(row[ix0 + 8], row[ix0 + 9]);
#define DW_SAME_SHIFTS const float8 s0 = (float8)(ap.s7, ac.s0123, ac.s456), s1 = ac;          \
        const float8 s2 = CONV_SHIFT1(ac, an);
#elif KWC == 5
#define DW_OB DW_OB5
#define DW_NT 5
#define DW_FMA DW_FMA5
#define DW_SHIFT34 const float8 s3 = CONV_SHIFT3(lo, hi), s4 = CONV_SHIFT4(lo, hi);
#define DW_LOAD_HI hi.s0123 = LD4(row + ix0 + 8);
#define DW_SAME_SHIFTS const float8 s0 = (float8)(ap.s67, ac.s0123, ac.s45);                  \
        const float8 s1 = (float8)(ap.s7, ac.s0123, ac.s456), s2 = ac;                       \
        const float8 s3 = CONV_SHIFT1(ac, an), s4 = CONV_SHIFT2(ac, an);
#else
#define DW_OB 8
#define DW_NT 1
#define DW_FMA DW_FMA1
#endif
#if DW_OB > 6
#define DW_FMA_HI(D) DW_FMA(4, D) DW_FMA(5, D) DW_FMA(6, D) DW_FMA(7, D)
#elif DW_OB > 4
#define DW_FMA_HI(D) DW_FMA(4, D) DW_FMA(5, D)
#else
#define DW_FMA_HI(D)
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
    const int OHW = OH * OW, n0 = chunk * nper, n1 = imin(N, n0 + nper);
    const int oy_lo = pad - ky > 0 ? pad - ky : 0, oy_hi = imin(OH, H + pad - ky);
    const bool aligned = W % 8 == 0 && pad <= 2;  /* CONV_ROW_ALIGNED applies */
    DW_DECL(0) DW_DECL(1) DW_DECL(2) DW_DECL(3) DW_DECL(4) DW_DECL(5) DW_DECL(6) DW_DECL(7)
#if KWC == 0
    for (int n = n0; n < n1; ++n) {
        const __global float* xc = x + ((long)n * C + (long)g * CIG + c) * H * W;
        const __global float* dn = dy + ((long)n * O + (long)g * COG + oc0) * OHW;
        for (int oy = oy_lo; oy < oy_hi; ++oy) {
            const __global float* row = xc + (long)(oy - pad + ky) * W;
            for (int ox0 = 0; ox0 < OW; ox0 += 8) {
                const int ix0 = ox0 - pad + kx0, nout = imin(8, OW - ox0);
                const __global float* dq = dn + oy * OW + ox0;
                const float8 s0 = (float8)(conv_ld(row, ix0, W), conv_ld(row, ix0 + 1, W),
                                           conv_ld(row, ix0 + 2, W), conv_ld(row, ix0 + 3, W),
                                           conv_ld(row, ix0 + 4, W), conv_ld(row, ix0 + 5, W),
                                           conv_ld(row, ix0 + 6, W), conv_ld(row, ix0 + 7, W));
                DW_FMA(0, DW_DY) DW_FMA(1, DW_DY) DW_FMA(2, DW_DY) DW_FMA(3, DW_DY)
                DW_FMA_HI(DW_DY)
            }
        }
    }
#else
    /* pieces ox0 in [pin_lo, pin_hi) are whole and wholly inside the input row */
    const int pin_lo = (pad + 7) / 8 * 8, lim = imin(OW - 8, W + pad - 7 - KWC);
    const int pin_hi = lim < pin_lo ? pin_lo : lim / 8 * 8 + 8;
    const long xstride = (long)C * H * W, dstride = (long)O * OHW;
    const __global float* xr = x + ((long)n0 * C + (long)g * CIG + c) * H * W
                               + (long)(oy_lo - pad + ky) * W;  /* image n, row oy_lo */
    const __global float* dr = dy + ((long)n0 * O + (long)g * COG + oc0) * OHW + oy_lo * OW;
    if (W % 8 == 0 && 2 * pad == KWC - 1) {  /* "same" padding, rows of whole pieces */
        for (int n = n0; n < n1; ++n, xr += xstride, dr += dstride) {
            const __global float* row = xr; const __global float* drow = dr;
            for (int oy = oy_lo; oy < oy_hi; ++oy, row += W, drow += OW) {
                float8 ap = 0.0f, ac = LD8(row);  /* pieces before and at ox0; an: after */
                for (int ox0 = 0; ox0 < W; ox0 += 8) {
                    const float8 an = ox0 + 8 < W ? LD8(row + ox0 + 8) : (float8)0.0f;
                    const __global float* dq = drow + ox0;
                    DW_SAME_SHIFTS
                    DW_FMA(0, DW_DYF) DW_FMA(1, DW_DYF) DW_FMA(2, DW_DYF) DW_FMA(3, DW_DYF)
                    DW_FMA_HI(DW_DYF)
                    ap = ac;
                    ac = an;
                }
            }
        }
    } else if (pin_hi > pin_lo) {  /* wide rows: row by row */
        for (int n = n0; n < n1; ++n, xr += xstride, dr += dstride) {
            const __global float* row = xr; const __global float* drow = dr;
            for (int oy = oy_lo; oy < oy_hi; ++oy, row += W, drow += OW) {
                for (int ox0 = 0; ox0 < pin_lo; ox0 += 8) DW_STEP_BORDER
                for (int ox0 = pin_lo; ox0 < pin_hi; ox0 += 8) {
                    const int ix0 = ox0 - pad + kx0;
                    const __global float* dq = drow + ox0;
                    DW_STEP(DW_LOAD_INNER, DW_DYF)
                }
                for (int ox0 = pin_hi; ox0 < OW; ox0 += 8) DW_STEP_BORDER
            }
        }
    } else {  /* narrow rows: piece by piece, each down the image's rows */
        for (int n = n0; n < n1; ++n, xr += xstride, dr += dstride) {
            for (int ox0 = 0; ox0 < OW; ox0 += 8) {
                const int ix0 = ox0 - pad + kx0, nout = imin(8, OW - ox0);
                if (nout == 8 && ix0 >= 0 && ix0 + 7 + KWC <= W) {
                    DW_DOWN(DW_LOAD_INNER, DW_DYF)
                } else if (nout == 8 && aligned) {
                    DW_DOWN(DW_LOAD_ALIGNED, DW_DYF)
                } else {
                    DW_DOWN(DW_LOAD_CHECKED, DW_DY)
                }
            }
        }
    }
#endif
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
#undef DW_FMA_HI
#undef DW_SHIFT34
#undef DW_LOAD_HI
#undef DW_SAME_SHIFTS
