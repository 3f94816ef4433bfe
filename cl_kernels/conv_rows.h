/* Template of the two-row direct convolution kernel for one constant filter width KWC
 * (included by conv.cl after conv_kw.h, whose helpers it uses): conv2d_r2_k<KWC>, or
 * conv2d_r2_k0 for any width (KWC 0: the runtime KW). Plain OpenCL C 1.2.
 *
 * A work-item owns 8 output channels x 8 pixels of TWO neighbouring output rows (oy, oy + 1)
 * in 16 float8 registers. Per input channel and filter row ky it needs input rows oy + ky and
 * oy + ky + 1 (less pad); the second is kept in registers for the next ky, so one new row is
 * loaded per filter row, as in conv2d_k<KWC>. Each weight broadcast feeds two FMAs (one per
 * output row) instead of one: half the weight loads per FMA of the 16-channel x 1-row tile. */

#ifndef CONV_ROWS_HELPERS
#define CONV_ROWS_HELPERS
#define CONV_RB 8  /* output channels per work-item of the two-row kernels */

/* a_r += w[r] * u and b_r += w[r] * v for the 8 output channels of one tap */
#define CONV_TAP2(U, V, w) {                                                                \
        const float8 u_ = (U), v_ = (V); const __global float* w_ = (w); float s_;          \
        s_ = w_[0]; a0 = s_ * u_ + a0; b0 = s_ * v_ + b0;                                   \
        s_ = w_[1]; a1 = s_ * u_ + a1; b1 = s_ * v_ + b1;                                   \
        s_ = w_[2]; a2 = s_ * u_ + a2; b2 = s_ * v_ + b2;                                   \
        s_ = w_[3]; a3 = s_ * u_ + a3; b3 = s_ * v_ + b3;                                   \
        s_ = w_[4]; a4 = s_ * u_ + a4; b4 = s_ * v_ + b4;                                   \
        s_ = w_[5]; a5 = s_ * u_ + a5; b5 = s_ * v_ + b5;                                   \
        s_ = w_[6]; a6 = s_ * u_ + a6; b6 = s_ * v_ + b6;                                   \
        s_ = w_[7]; a7 = s_ * u_ + a7; b7 = s_ * v_ + b7; }

/* lo, hi = the input row j (image row oy - pad + j) of channel plane xc under the pixel block:
 * zeros when that row is outside the image; otherwise as conv2d_k<KWC> loads it */
#define CONV_ROW2(j, lo, hi) {                                                              \
        hi = 0.0f;                                                                          \
        if ((j) < j_lo || (j) >= j_hi) {                                                    \
            lo = 0.0f;                                                                      \
        } else {                                                                            \
            const __global float* row = xc + (long)(oy - pad + (j)) * W;                    \
            if (aligned && !inner) {                                                        \
                CONV_ROW_ALIGNED(row, ox0, W, padx, lo, hi);                                \
            } else if (inner) {                                                             \
                lo = LD8(row + ix0);                                                        \
                CONV_ROW_TAIL(row, lo, hi);                                                 \
            } else {                                                                        \
                CONV_ROW_CHECKED(row, ix0, W, KWC == 5, lo, hi);                            \
            }                                                                               \
        }                                                                                   \
    }

/* filter row ky (its weights at wt): input rows ky (in lo0, hi0) and ky + 1 (loaded into
 * lo1, hi1, then kept as the next filter row's first) */
#define CONV_R2_STEP(ky, wt) {                                                              \
        CONV_ROW2((ky) + 1, lo1, hi1);                                                      \
        CONV_TAP2(CONV_SHIFT0(lo0, hi0), CONV_SHIFT0(lo1, hi1), (wt));                      \
        CONV_TAP2(CONV_SHIFT1(lo0, hi0), CONV_SHIFT1(lo1, hi1), (wt) + CONV_RB);            \
        CONV_TAP2(CONV_SHIFT2(lo0, hi0), CONV_SHIFT2(lo1, hi1), (wt) + 2 * CONV_RB);        \
        CONV_R2_TAPS5(wt);                                                                  \
        lo0 = lo1; hi0 = hi1;                                                               \
    }

/* y row piece of output channel oc0 + r, output row oy + rr (+ bias), when it exists (as
 * CONV_STORE) */
#define CONV_STORE2(r, rr, acc) if (oc0 + r < COG && oy + rr < OH) {                        \
        const float8 yv_ = (acc) + (has_bias ? bias[g * COG + oc0 + r] : 0.0f);             \
        __global float* yq_ = yo + (long)r * OH * OW + rr * OW;                             \
        if (nout == 8) {                                                                    \
            ST8(yv_, yq_);                                                                  \
        } else {                                                                            \
            CONV_ST_FIRST(yv_, yq_, nout);                                                  \
        }                                                                                   \
    }
#endif

#undef CONV_ROW_TAIL
#undef CONV_R2_TAPS5
#if KWC == 5  /* the last two taps of a 5-wide filter row */
#define CONV_R2_TAPS5(wt) {                                                                 \
        CONV_TAP2(CONV_SHIFT3(lo0, hi0), CONV_SHIFT3(lo1, hi1), (wt) + 3 * CONV_RB);        \
        CONV_TAP2(CONV_SHIFT4(lo0, hi0), CONV_SHIFT4(lo1, hi1), (wt) + 4 * CONV_RB);        \
    }
#else
#define CONV_R2_TAPS5(wt)
#endif
#if KWC == 3
#define CONV_ROW_TAIL(row, lo, hi) hi.s01 = (float2)(row[ix0 + 8], row[ix0 + 9])
#elif KWC == 5
#define CONV_ROW_TAIL(row, lo, hi) hi.s0123 = LD4(row + ix0 + 8)
#else
#define CONV_ROW_TAIL(row, lo, hi)
#endif

/* One work-item: output channels oc0..oc0+7 of group g, pixels ox0..ox0+7 of output rows oy
 * and oy + 1 of image n. Arguments as conv2d_k<KWC>; wp: conv2d_pack_w's layout with 8-channel
 * pieces. Global size (ceil(OH/2) * ceil(OW/8), G * ceil(COG/8), N). */
KERNEL void CONV_CAT(conv2d_r2_k, KWC)(__global const float* x, __global const float* wp,
                                       __global const float* bias, const int has_bias,
                                       __global float* y, const int C, const int H, const int W,
                                       const int O, const int OH, const int OW, const int KH,
                                       const int KW, const int pad, const int padx, const int G,
                                       const int N) {
    const int nbw = (OW + 7) / 8, COG = O / G, CIG = C / G;
    const int nob = (COG + CONV_RB - 1) / CONV_RB;
    const int blk = get_global_id(0), gob = get_global_id(1), n = get_global_id(2);
    if (blk >= (OH + 1) / 2 * nbw || gob >= G * nob || n >= N) return;
    const int g = gob / nob, oc0 = (gob - g * nob) * CONV_RB;
    const int by = blk / nbw, oy = 2 * by, ox0 = (blk - by * nbw) * 8, ix0 = ox0 - padx;
    const int KWE = KWC ? KWC : KW;  /* a constant in the fixed-width kernels */
    const int T = KH * KWE, HW = H * W;
    const bool inner = ix0 >= 0 && ix0 + 8 + KWE - 1 <= W;
    const bool aligned = W % 8 == 0 && padx <= 2;  /* CONV_ROW_ALIGNED applies */
    /* input rows j = 0..KH (image rows oy - pad + j) inside the image: j_lo <= j < j_hi;
     * filter row ky reads rows ky (output row oy) and ky + 1 (output row oy + 1) */
    const int j_lo = pad - oy > 0 ? pad - oy : 0, j_hi = imin(KH + 1, H + pad - oy);
    const int ky_lo = j_lo > 0 ? j_lo - 1 : 0, ky_hi = imin(KH, j_hi);
    const __global float* xg = x + ((long)n * C + (long)g * CIG) * HW;
    const __global float* wg = wp + (long)gob * CIG * T * CONV_RB;
    float8 a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f, a4 = 0.0f, a5 = 0.0f, a6 = 0.0f;
    float8 a7 = 0.0f, b0 = 0.0f, b1 = 0.0f, b2 = 0.0f, b3 = 0.0f, b4 = 0.0f, b5 = 0.0f;
    float8 b6 = 0.0f, b7 = 0.0f;
    for (int c = 0; c < CIG; ++c) {
        const __global float* xc = xg + (long)c * HW;
        const __global float* wt = wg + ((long)c * T + ky_lo * KWE) * CONV_RB;
#if KWC == 0  /* any width: 8 bounds-checked loads per tap and row */
        for (int ky = ky_lo; ky < ky_hi; ++ky, wt += KW * CONV_RB) {
            const bool v0 = ky >= j_lo && ky < j_hi, v1 = ky + 1 >= j_lo && ky + 1 < j_hi;
            const __global float* r0 = xc + (long)(oy - pad + ky) * W;
            const __global float* r1 = r0 + W;
            for (int kx = 0; kx < KW; ++kx) {
                const int i = ix0 + kx;
                float8 u = 0.0f, v = 0.0f;
                if (v0)
                    u = (float8)(conv_ld(r0, i, W), conv_ld(r0, i + 1, W), conv_ld(r0, i + 2, W),
                                 conv_ld(r0, i + 3, W), conv_ld(r0, i + 4, W),
                                 conv_ld(r0, i + 5, W), conv_ld(r0, i + 6, W),
                                 conv_ld(r0, i + 7, W));
                if (v1)
                    v = (float8)(conv_ld(r1, i, W), conv_ld(r1, i + 1, W), conv_ld(r1, i + 2, W),
                                 conv_ld(r1, i + 3, W), conv_ld(r1, i + 4, W),
                                 conv_ld(r1, i + 5, W), conv_ld(r1, i + 6, W),
                                 conv_ld(r1, i + 7, W));
                CONV_TAP2(u, v, wt + kx * CONV_RB);
            }
        }
#else
        float8 lo0, hi0, lo1, hi1;
        CONV_ROW2(ky_lo, lo0, hi0);
#if KWC == 3  /* (unrolling the 5 rows of 5x5 filters was slower under PoCL 3.1) */
        if (KH == KWC && ky_lo == 0 && ky_hi == KWC) {  /* the whole square filter */
            UNROLL for (int ky = 0; ky < KWC; ++ky) CONV_R2_STEP(ky, wt + ky * KWC * CONV_RB);
        } else
#endif
        for (int ky = ky_lo; ky < ky_hi; ++ky, wt += KWC * CONV_RB) CONV_R2_STEP(ky, wt);
#endif
    }
    const int nout = imin(8, OW - ox0);
    __global float* yo = y + (((long)n * O + g * COG + oc0) * OH + oy) * OW + ox0;
    CONV_STORE2(0, 0, a0); CONV_STORE2(1, 0, a1); CONV_STORE2(2, 0, a2); CONV_STORE2(3, 0, a3);
    CONV_STORE2(4, 0, a4); CONV_STORE2(5, 0, a5); CONV_STORE2(6, 0, a6); CONV_STORE2(7, 0, a7);
    CONV_STORE2(0, 1, b0); CONV_STORE2(1, 1, b1); CONV_STORE2(2, 1, b2); CONV_STORE2(3, 1, b3);
    CONV_STORE2(4, 1, b4); CONV_STORE2(5, 1, b5); CONV_STORE2(6, 1, b6); CONV_STORE2(7, 1, b7);
}
