/* Template of the direct convolution kernel for one constant filter width KWC (included by
 * conv.cl): conv2d_k<KWC>, or conv2d_k0 for any width (KWC 0: the runtime KW). See conv.cl
 * for the layouts and the design. Plain OpenCL C 1.2. */

#ifndef CONV_KW_HELPERS
#define CONV_KW_HELPERS
#define CONV_CAT_(a, b) a##b
#define CONV_CAT(a, b) CONV_CAT_(a, b)

/* x[ix] of one image row, zero outside [0, W) (the padding) */
inline float conv_ld(const __global float* row, const int ix, const int W) {
    return ix >= 0 && ix < W ? row[ix] : 0.0f;
}

/* The 8 inputs under filter column kx, from the row pieces lo (columns 0..7) and hi (8..15):
 * swizzles of sizes OpenCL allows (4, 3, 2, 1). */
#define CONV_SHIFT0(lo, hi) (lo)
#define CONV_SHIFT1(lo, hi) (float8)((lo).s1234, (lo).s567, (hi).s0)
#define CONV_SHIFT2(lo, hi) (float8)((lo).s2345, (lo).s67, (hi).s01)
#define CONV_SHIFT3(lo, hi) (float8)((lo).s3456, (lo).s7, (hi).s012)
#define CONV_SHIFT4(lo, hi) (float8)((lo).s4567, (hi).s0123)

/* lo = x[ix0 .. ix0 + 7], hi.s01 = x[ix0 + 8, ix0 + 9] and, when wide5 (a compile-time 5-wide
 * filter), hi.s23 = x[ix0 + 10, ix0 + 11], each lane bounds-checked: pieces at the borders */
#define CONV_ROW_CHECKED(row, ix0, W, wide5, lo, hi) {                                      \
        lo = (float8)(conv_ld(row, ix0, W), conv_ld(row, (ix0) + 1, W),                     \
                      conv_ld(row, (ix0) + 2, W), conv_ld(row, (ix0) + 3, W),               \
                      conv_ld(row, (ix0) + 4, W), conv_ld(row, (ix0) + 5, W),               \
                      conv_ld(row, (ix0) + 6, W), conv_ld(row, (ix0) + 7, W));              \
        hi.s01 = (float2)(conv_ld(row, (ix0) + 8, W), conv_ld(row, (ix0) + 9, W));          \
        if (wide5)                                                                          \
            hi.s23 = (float2)(conv_ld(row, (ix0) + 10, W), conv_ld(row, (ix0) + 11, W));    \
    }

/* lo, hi = x[ix0 .. ix0 + 15] of one image row (zeros outside [0, W)), ix0 = ox0 - pad, when
 * W and ox0 are multiples of 8 and pad <= 2 (the caller checks): the 8-column pieces before,
 * at and after ox0 are each wholly inside the row or wholly outside, so three aligned vector
 * loads (or zeros) and a swizzle replace the per-lane bounds checks of pieces at the borders
 * (at 8 and 16 columns, every piece is one). */
#define CONV_ROW_ALIGNED(row, ox0, W, pad, lo, hi) {                                        \
        const float8 p_ = (ox0) >= 8 && (ox0) <= (W) ? LD8((row) + (ox0) - 8) : (float8)0.0f; \
        const float8 v_ = (ox0) + 8 <= (W) ? LD8((row) + (ox0)) : (float8)0.0f;             \
        const float8 n_ = (ox0) + 16 <= (W) ? LD8((row) + (ox0) + 8) : (float8)0.0f;        \
        if ((pad) == 1) {                                                                   \
            lo = (float8)(p_.s7, v_.s0123, v_.s456); hi = (float8)(v_.s7, n_.s0123, n_.s456); \
        } else if ((pad) == 2) {                                                            \
            lo = (float8)(p_.s67, v_.s0123, v_.s45); hi = (float8)(v_.s67, n_.s0123, n_.s45); \
        } else {                                                                            \
            lo = v_; hi = n_;                                                               \
        }                                                                                   \
    }

/* acc_r += w[r] * v for the 16 output channels of one tap (weights broadcast from memory) */
#define CONV_TAP(V, w) {                                                                    \
        const float8 v_ = (V); const __global float* w_ = (w);                              \
        a0 = w_[0] * v_ + a0;   a1 = w_[1] * v_ + a1;   a2 = w_[2] * v_ + a2;                \
        a3 = w_[3] * v_ + a3;   a4 = w_[4] * v_ + a4;   a5 = w_[5] * v_ + a5;                \
        a6 = w_[6] * v_ + a6;   a7 = w_[7] * v_ + a7;   a8 = w_[8] * v_ + a8;                \
        a9 = w_[9] * v_ + a9;   a10 = w_[10] * v_ + a10; a11 = w_[11] * v_ + a11;            \
        a12 = w_[12] * v_ + a12; a13 = w_[13] * v_ + a13; a14 = w_[14] * v_ + a14;           \
        a15 = w_[15] * v_ + a15; }

/* q[0 .. n-1] = the first n (< 8) lanes of v (no private array: PoCL would call vstore8) */
#define CONV_ST_FIRST(v, q, n) {                                                            \
        if ((n) > 0) (q)[0] = (v).s0;                                                       \
        if ((n) > 1) (q)[1] = (v).s1;                                                       \
        if ((n) > 2) (q)[2] = (v).s2;                                                       \
        if ((n) > 3) (q)[3] = (v).s3;                                                       \
        if ((n) > 4) (q)[4] = (v).s4;                                                       \
        if ((n) > 5) (q)[5] = (v).s5;                                                       \
        if ((n) > 6) (q)[6] = (v).s6;                                                       \
    }

/* y row piece of output channel oc (+ bias): whole float8, or the first nout lanes. The
 * locals are not named v_ / q_: ST8's own locals would shadow them in their initializers
 * (`float8 v_ = (v_)` reads the uninitialized inner variable), which compilers were free to
 * turn into "the whole-float8 branch is never taken": every piece went through a private
 * array lane by lane, ~10-30% of the kernel's time. */
#define CONV_STORE(r, acc) if (oc0 + r < COG) {                                             \
        const float8 yv_ = (acc) + (has_bias ? bias[g * COG + oc0 + r] : 0.0f);             \
        __global float* yq_ = yo + (long)r * OH * OW;                                       \
        if (nout == 8) {                                                                    \
            ST8(yv_, yq_);                                                                  \
        } else {                                                                            \
            CONV_ST_FIRST(yv_, yq_, nout);                                                  \
        }                                                                                   \
    }
#endif

/* Filter row ky of input channel plane xc (weights of the channel at wc): the 8 + KWC - 1
 * inputs under the pixel block (pieces at the borders: aligned loads or bounds-checked),
 * then one CONV_TAP per filter column with the shifted float8 of them. */
#undef CONV_K_ROW
#if KWC
#define CONV_K_ROW(ky) {                                                                    \
        const __global float* row = xc + (long)(oy - pad + (ky)) * W;                       \
        const __global float* wt = wc + (ky) * KWC * CONV_OB;                               \
        float8 lo, hi = 0.0f;                                                               \
        if (aligned && !inner) {                                                            \
            CONV_ROW_ALIGNED(row, ox0, W, padx, lo, hi);                                    \
        } else if (inner) {                                                                 \
            lo = LD8(row + ix0);                                                            \
            if (KWC == 3) hi.s01 = (float2)(row[ix0 + 8], row[ix0 + 9]);                    \
            if (KWC == 5) hi.s0123 = LD4(row + ix0 + 8);                                    \
        } else {                                                                            \
            CONV_ROW_CHECKED(row, ix0, W, KWC == 5, lo, hi);                                \
        }                                                                                   \
        CONV_TAP(CONV_SHIFT0(lo, hi), wt);                                                  \
        CONV_TAP(CONV_SHIFT1(lo, hi), wt + CONV_OB);                                        \
        CONV_TAP(CONV_SHIFT2(lo, hi), wt + 2 * CONV_OB);                                    \
        if (KWC == 5) {                                                                     \
            CONV_TAP(CONV_SHIFT3(lo, hi), wt + 3 * CONV_OB);                                \
            CONV_TAP(CONV_SHIFT4(lo, hi), wt + 4 * CONV_OB);                                \
        }                                                                                   \
    }
#endif

/* One work-item: output channels oc0..oc0+15 of group g, pixels ox0..ox0+7 of output row oy
 * of image n. Zero padding pad above and below, padx left and right. Global size
 * (OH * ceil(OW/8), G * ceil(COG/16), N). wp: conv2d_pack_w's layout. */
KERNEL void CONV_CAT(conv2d_k, KWC)(__global const float* x, __global const float* wp,
                                    __global const float* bias, const int has_bias,
                                    __global float* y, const int C, const int H, const int W,
                                    const int O, const int OH, const int OW, const int KH,
                                    const int KW, const int pad, const int padx, const int G,
                                    const int N) {
    const int nbw = (OW + 7) / 8, COG = O / G, CIG = C / G;
    const int nob = (COG + CONV_OB - 1) / CONV_OB;
    const int blk = get_global_id(0), gob = get_global_id(1), n = get_global_id(2);
    if (blk >= OH * nbw || gob >= G * nob || n >= N) return;
    const int g = gob / nob, oc0 = (gob - g * nob) * CONV_OB;
    const int oy = blk / nbw, ox0 = (blk - oy * nbw) * 8, ix0 = ox0 - padx;
    const int KWE = KWC ? KWC : KW;  /* a constant in the fixed-width kernels */
    const int T = KH * KWE, HW = H * W;
    const bool inner = ix0 >= 0 && ix0 + 8 + KWE - 1 <= W;
    const bool aligned = W % 8 == 0 && padx <= 2;  /* CONV_ROW_ALIGNED applies */
    const int ky_lo = pad - oy > 0 ? pad - oy : 0, ky_hi = imin(KH, H + pad - oy);
    const __global float* xg = x + ((long)n * C + (long)g * CIG) * HW;
    const __global float* wg = wp + (long)gob * CIG * T * CONV_OB;
    float8 a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f, a4 = 0.0f, a5 = 0.0f, a6 = 0.0f;
    float8 a7 = 0.0f, a8 = 0.0f, a9 = 0.0f, a10 = 0.0f, a11 = 0.0f, a12 = 0.0f, a13 = 0.0f;
    float8 a14 = 0.0f, a15 = 0.0f;
#if KWC == 0  /* any width: 8 bounds-checked loads per tap */
    for (int c = 0; c < CIG; ++c) {
        for (int ky = ky_lo; ky < ky_hi; ++ky) {
            const __global float* row = xg + (long)c * HW + (long)(oy - pad + ky) * W;
            const __global float* wt = wg + ((long)c * T + ky * KWE) * CONV_OB;
            for (int kx = 0; kx < KW; ++kx) {
                const int i = ix0 + kx;
                CONV_TAP(((float8)(conv_ld(row, i, W), conv_ld(row, i + 1, W),
                                   conv_ld(row, i + 2, W), conv_ld(row, i + 3, W),
                                   conv_ld(row, i + 4, W), conv_ld(row, i + 5, W),
                                   conv_ld(row, i + 6, W), conv_ld(row, i + 7, W))),
                         wt + kx * CONV_OB);
            }
        }
    }
#else
    for (int c = 0; c < CIG; ++c) {
        const __global float* xc = xg + (long)c * HW;
        const __global float* wc = wg + (long)c * T * CONV_OB;
        if (KH == KWC && ky_lo == 0 && ky_hi == KWC) {  /* the whole square filter: unrolled */
            UNROLL for (int ky = 0; ky < KWC; ++ky) CONV_K_ROW(ky);
        } else {
            for (int ky = ky_lo; ky < ky_hi; ++ky) CONV_K_ROW(ky);
        }
    }
#endif
    const int nout = imin(8, OW - ox0);
    __global float* yo = y + (((long)n * O + g * COG + oc0) * OH + oy) * OW + ox0;
    CONV_STORE(0, a0); CONV_STORE(1, a1); CONV_STORE(2, a2); CONV_STORE(3, a3);
    CONV_STORE(4, a4); CONV_STORE(5, a5); CONV_STORE(6, a6); CONV_STORE(7, a7);
    CONV_STORE(8, a8); CONV_STORE(9, a9); CONV_STORE(10, a10); CONV_STORE(11, a11);
    CONV_STORE(12, a12); CONV_STORE(13, a13); CONV_STORE(14, a14); CONV_STORE(15, a15);
}
