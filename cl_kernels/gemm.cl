/* Dense batched GEMM: C[b] = alpha * op(A[b]) @ op(B[b]) + beta * C[b] (row-major C).
 *
 * Design (tuned on PoCL's CPU device; plain OpenCL C 1.2 without barriers, so GPUs run it too):
 * - Each work-item owns a GEMM_MR x 16 block of C (6x16 in 12 float8 registers; 12x16 in 24 in
 *   the gemm@mr12 build, for AVX-512 CPUs): per k it loads 16 values of op(B) as two float8,
 *   broadcasts GEMM_MR values of op(A) and does 2*GEMM_MR vector a*b + c (not fma()/mad(), ~9x
 *   slower on PoCL). The kernels keep their historical names gemm_6x16*.
 * - Grid (rb, column panel j, row block x K slice s x batch b): a work-group on a CPU is a column
 *   of row panels sharing one B panel (in L1 while its work-items run one after the other), and
 *   the groups of one row block walk the column panels while its A panels stay in L2.
 * - op(B) is packed by gemm_pack_b into 16-column panels (Bp[b][j][k][0..15], zero past N) for
 *   aligned float8 loads, or, when row-major with N >= 16, read in place (last panel shifted
 *   left to end at column N, so there is no ragged tail).
 * - op(A) is read in place through a row stride and a column stride (covers A and A^T), or
 *   packed by gemm_pack_a into GEMM_MR-row panels (Ap[b][i][k][0..MR-1]) for large products.
 * - K: the host runs K in blocks of a few hundred (each launch adds into C: the B panels of a
 *   block stay in cache) or, with few output blocks, splits it across work-items into a scratch
 *   buffer that gemm_splitk_reduce sums in slice order. Results are deterministic.
 */

#include "common.h"

/* Rows of C per work-item: 6 (12 float8 accumulators: fits the 16 vector registers of AVX2), or
 * 12 in the gemm@mr12 build (24 accumulators: for the 32 registers of AVX-512, where each
 * broadcast of A then feeds twice as many multiply-adds). */
#ifndef GEMM_MR
#define GEMM_MR 6
#endif
#define GEMM_NR 16

/* Unaligned 8-float load/store. On PoCL vload8/vstore8 ran 2-3x slower than 8 scalar accesses,
 * which LLVM merges into one vector access. */
#define GEMM_LD8(p) (float8)((p)[0], (p)[1], (p)[2], (p)[3], (p)[4], (p)[5], (p)[6], (p)[7])
#define GEMM_ST8(v, p) do { \
        __global float *q_ = (p); const float8 v_ = (v); \
        q_[0] = v_.s0; q_[1] = v_.s1; q_[2] = v_.s2; q_[3] = v_.s3; \
        q_[4] = v_.s4; q_[5] = v_.s5; q_[6] = v_.s6; q_[7] = v_.s7; \
    } while (0)

#define GEMM_C(v, S) v.S
#define GEMM_T8(S, p) (float8)(GEMM_C(p##0, S), GEMM_C(p##1, S), GEMM_C(p##2, S), \
                               GEMM_C(p##3, S), GEMM_C(p##4, S), GEMM_C(p##5, S), \
                               GEMM_C(p##6, S), GEMM_C(p##7, S))

/* op(B) (nbatch batches of K x N, element (k, n) at B[b*sb + k*rs + n*cs]) -> Bp panels of 16
 * (zero past N). Work-item (j, k8, b) moves 8 rows k of panel j: for B (cs == 1) two float8
 * row pieces per k, neighbours reading neighbouring memory; for B^T (rs == 1) 16 float8 column
 * pieces transposed in registers. Ragged edges take the scalar path. */
KERNEL void gemm_pack_b(const int K, const int N, __global const float *B, const int sb,
                        const int rs, const int cs, __global float8 *Bp, const int nbatch)
{
    const int j = get_global_id(0);
    const int k0 = get_global_id(1) * 8;
    const int b = get_global_id(2);
    const int npanels = (N + GEMM_NR - 1) / GEMM_NR;
    if (j >= npanels || k0 >= K || b >= nbatch)
        return;
    const __global float *src = B + (size_t)b * sb + (size_t)k0 * rs + (size_t)(j * GEMM_NR) * cs;
    __global float8 *dst = Bp + ((size_t)(b * npanels + j) * K + k0) * 2;
    const int ncols = N - j * GEMM_NR;
    const int nk = K - k0;
    if (ncols >= GEMM_NR && nk >= 8 && cs == 1) {
        for (int q = 0; q < 8; ++q) {
            dst[2 * q] = GEMM_LD8(src + (size_t)q * rs);
            dst[2 * q + 1] = GEMM_LD8(src + (size_t)q * rs + 8);
        }
    } else if (ncols >= GEMM_NR && nk >= 8 && rs == 1) {
        const float8 u0 = GEMM_LD8(src), u1 = GEMM_LD8(src + (size_t)cs);
        const float8 u2 = GEMM_LD8(src + (size_t)2 * cs), u3 = GEMM_LD8(src + (size_t)3 * cs);
        const float8 u4 = GEMM_LD8(src + (size_t)4 * cs), u5 = GEMM_LD8(src + (size_t)5 * cs);
        const float8 u6 = GEMM_LD8(src + (size_t)6 * cs), u7 = GEMM_LD8(src + (size_t)7 * cs);
        const __global float *s8 = src + (size_t)8 * cs;
        const float8 w0 = GEMM_LD8(s8), w1 = GEMM_LD8(s8 + (size_t)cs);
        const float8 w2 = GEMM_LD8(s8 + (size_t)2 * cs), w3 = GEMM_LD8(s8 + (size_t)3 * cs);
        const float8 w4 = GEMM_LD8(s8 + (size_t)4 * cs), w5 = GEMM_LD8(s8 + (size_t)5 * cs);
        const float8 w6 = GEMM_LD8(s8 + (size_t)6 * cs), w7 = GEMM_LD8(s8 + (size_t)7 * cs);
        dst[0] = GEMM_T8(s0, u); dst[1] = GEMM_T8(s0, w);
        dst[2] = GEMM_T8(s1, u); dst[3] = GEMM_T8(s1, w);
        dst[4] = GEMM_T8(s2, u); dst[5] = GEMM_T8(s2, w);
        dst[6] = GEMM_T8(s3, u); dst[7] = GEMM_T8(s3, w);
        dst[8] = GEMM_T8(s4, u); dst[9] = GEMM_T8(s4, w);
        dst[10] = GEMM_T8(s5, u); dst[11] = GEMM_T8(s5, w);
        dst[12] = GEMM_T8(s6, u); dst[13] = GEMM_T8(s6, w);
        dst[14] = GEMM_T8(s7, u); dst[15] = GEMM_T8(s7, w);
    } else {
        __global float *d = (__global float *)dst;
        for (int q = 0; q < min(8, nk); ++q)
            for (int c = 0; c < GEMM_NR; ++c)
                d[q * GEMM_NR + c] = c < ncols ? src[(size_t)q * rs + (size_t)c * cs] : 0.0f;
    }
}

/* op(A) (nbatch batches of M x K, element (m, k) at A[b*sa + m*rs + k*cs]) -> Ap panels of
 * GEMM_MR rows (zero past M): Ap[b][i][k][r]. Work-item (k8, i, b) moves 8 columns k of row
 * panel i; for A^T (rs == 1) the grid is (i, k8, b) instead, so neighbours read neighbouring
 * memory. */
KERNEL void gemm_pack_a(const int M, const int K, __global const float *A, const int sa,
                        const int rs, const int cs, __global float *Ap, const int nbatch)
{
    const int g0 = get_global_id(0), g1 = get_global_id(1);
    const int k0 = (rs == 1 ? g1 : g0) * 8;
    const int i = rs == 1 ? g0 : g1;
    const int b = get_global_id(2);
    const int npanels = (M + GEMM_MR - 1) / GEMM_MR;
    if (k0 >= K || i >= npanels || b >= nbatch)
        return;
    const __global float *src = A + (size_t)b * sa + (size_t)(i * GEMM_MR) * rs + (size_t)k0 * cs;
    __global float *dst = Ap + ((size_t)(b * npanels + i) * K + k0) * GEMM_MR;
    const int nrows = M - i * GEMM_MR;
    const int nk = K - k0;
    if (nrows >= GEMM_MR && nk >= 8 && cs == 1) {
        const float8 r0 = GEMM_LD8(src), r1 = GEMM_LD8(src + (size_t)rs);
        const float8 r2 = GEMM_LD8(src + (size_t)2 * rs), r3 = GEMM_LD8(src + (size_t)3 * rs);
        const float8 r4 = GEMM_LD8(src + (size_t)4 * rs), r5 = GEMM_LD8(src + (size_t)5 * rs);
#if GEMM_MR == 12
        const float8 r6 = GEMM_LD8(src + (size_t)6 * rs), r7 = GEMM_LD8(src + (size_t)7 * rs);
        const float8 r8 = GEMM_LD8(src + (size_t)8 * rs), r9 = GEMM_LD8(src + (size_t)9 * rs);
        const float8 r10 = GEMM_LD8(src + (size_t)10 * rs);
        const float8 r11 = GEMM_LD8(src + (size_t)11 * rs);
        /* 96 floats k-major: 12 rows of column q at dst + 12q */
#define GEMM_PA12(S, q) \
        GEMM_ST8((float8)(r0.S, r1.S, r2.S, r3.S, r4.S, r5.S, r6.S, r7.S), dst + 12 * q); \
        dst[12 * q + 8] = r8.S; dst[12 * q + 9] = r9.S; \
        dst[12 * q + 10] = r10.S; dst[12 * q + 11] = r11.S
        GEMM_PA12(s0, 0); GEMM_PA12(s1, 1); GEMM_PA12(s2, 2); GEMM_PA12(s3, 3);
        GEMM_PA12(s4, 4); GEMM_PA12(s5, 5); GEMM_PA12(s6, 6); GEMM_PA12(s7, 7);
#else
        /* 48 floats k-major: (r0.s0 .. r5.s0), (r0.s1 .. r5.s1), ... */
        GEMM_ST8((float8)(r0.s0, r1.s0, r2.s0, r3.s0, r4.s0, r5.s0, r0.s1, r1.s1), dst);
        GEMM_ST8((float8)(r2.s1, r3.s1, r4.s1, r5.s1, r0.s2, r1.s2, r2.s2, r3.s2), dst + 8);
        GEMM_ST8((float8)(r4.s2, r5.s2, r0.s3, r1.s3, r2.s3, r3.s3, r4.s3, r5.s3), dst + 16);
        GEMM_ST8((float8)(r0.s4, r1.s4, r2.s4, r3.s4, r4.s4, r5.s4, r0.s5, r1.s5), dst + 24);
        GEMM_ST8((float8)(r2.s5, r3.s5, r4.s5, r5.s5, r0.s6, r1.s6, r2.s6, r3.s6), dst + 32);
        GEMM_ST8((float8)(r4.s6, r5.s6, r0.s7, r1.s7, r2.s7, r3.s7, r4.s7, r5.s7), dst + 40);
#endif
    } else if (nrows >= GEMM_MR && nk >= 8 && rs == 1) {
        for (int q = 0; q < 8; ++q) {
            const __global float *s = src + (size_t)q * cs;
            __global float *d = dst + q * GEMM_MR;
            d[0] = s[0]; d[1] = s[1]; d[2] = s[2]; d[3] = s[3]; d[4] = s[4]; d[5] = s[5];
#if GEMM_MR == 12
            d[6] = s[6]; d[7] = s[7]; d[8] = s[8]; d[9] = s[9]; d[10] = s[10]; d[11] = s[11];
#endif
        }
    } else {
        for (int q = 0; q < min(8, nk); ++q)
            for (int r = 0; r < GEMM_MR; ++r)
                dst[q * GEMM_MR + r] = r < nrows ? src[(size_t)r * rs + (size_t)q * cs] : 0.0f;
    }
}

/* v (+ beta*c) into lanes lo <= q < hi of c[0..3] / c[0..7] / one 16-wide C row, split in
 * halves so a ragged row costs a few branches, not 16. beta == 0 never reads C (it may hold
 * garbage). No private arrays: PoCL spills them to memory. */
#define GEMM_ST1(q, x) if (q >= lo && q < hi) c[q] = beta != 0.0f ? beta * c[q] + (x) : (x)
inline void gemm_store4(__global float *c, float4 v, const int lo, const int hi,
                        const float beta)
{
    if (hi <= 0 || lo >= 4)
        return;
    if (lo <= 0 && hi >= 4) {
        if (beta != 0.0f)
            v = beta * (float4)(c[0], c[1], c[2], c[3]) + v;
        c[0] = v.s0; c[1] = v.s1; c[2] = v.s2; c[3] = v.s3;
    } else {
        GEMM_ST1(0, v.s0); GEMM_ST1(1, v.s1); GEMM_ST1(2, v.s2); GEMM_ST1(3, v.s3);
    }
}

inline void gemm_store8(__global float *c, float8 v, const int lo, const int hi,
                        const float beta)
{
    if (hi <= 0 || lo >= 8)
        return;
    if (lo <= 0 && hi >= 8) {
        if (beta != 0.0f)
            v = beta * GEMM_LD8(c) + v;
        GEMM_ST8(v, c);
    } else {
        gemm_store4(c, v.lo, lo, hi, beta);
        gemm_store4(c + 4, v.hi, lo - 4, hi - 4, beta);
    }
}

inline void gemm_store_row(__global float *c, float8 v0, float8 v1, const int lo, const int hi,
                           const float alpha, const float beta)
{
    gemm_store8(c, alpha * v0, lo, hi, beta);
    gemm_store8(c + 8, alpha * v1, lo - 8, hi - 8, beta);
}

/* One GEMM_MR x 16 block of C over one K slice.
 * A: row panel i starts at A + b*sa + i*sp; row r of the panel at + r*rs, its column k at + k*cs
 *    (apacked: zero-padded panels; else rows past M re-read row M-1; their results are dropped).
 * B: packed (bdirect == 0): panel j at B + b*sb + j*16K, row k at + 16k; or read in place
 *    (bdirect == 1, op(B) = B row-major with N >= 16): row k at B + b*sb + k*N; the last panel
 *    is shifted left to end at column N (no tail, no copy) and stores only its new columns.
 * K: this launch covers [kb, ke) in slices of kc; slice s covers [kb + s*kc, ...) and writes
 *    C + s*sc. Inlined with literal rs/cs for packed A, so those loads use constant offsets. */
inline void gemm_block(const int M, const int N, const int K, const int nbatch,
                       __global const float *A, const int apacked, const int sa, const int sp,
                       const int rs, const int cs, __global const float *B, const int sb,
                       const int bdirect, __global float *C, const int ldc, const int scb,
                       const int sc, const int kb, const int ke, const int kc, const int rb,
                       const float alpha, const float beta)
{
    /* grid (rb, column panels, row blocks x K slices x batches), batch fastest: row panel
     * i = row block * rb + get_global_id(0) */
    const int nsplit = (ke - kb + kc - 1) / kc;
    const int g2 = get_global_id(2);
    const int b = g2 % nbatch;
    const int s = (g2 / nbatch) % nsplit;
    const int i = (g2 / nbatch / nsplit) * rb + get_global_id(0);
    const int j = get_global_id(1);
    const int mpanels = (M + GEMM_MR - 1) / GEMM_MR;
    const int npanels = (N + GEMM_NR - 1) / GEMM_NR;
    const int k0 = kb + s * kc;
    if (get_global_id(0) >= rb || i >= mpanels || j >= npanels || k0 >= ke)
        return;
    const int n = min(ke - k0, kc);
    const int nrows = min(GEMM_MR, M - i * GEMM_MR);

    /* packed panels are zero-padded; in place, rows past M re-read row M-1. One pointer with
     * row offsets (constants for packed A) keeps the loop to one address increment. */
    const int last = apacked ? GEMM_MR - 1 : nrows - 1;
    const __global float *a0 = A + (size_t)b * sa + (size_t)i * sp + (size_t)k0 * cs;
    const size_t o1 = (size_t)min(1, last) * rs, o2 = (size_t)min(2, last) * rs;
    const size_t o3 = (size_t)min(3, last) * rs, o4 = (size_t)min(4, last) * rs;
    const size_t o5 = (size_t)min(5, last) * rs;
#if GEMM_MR == 12
    const size_t o6 = (size_t)min(6, last) * rs, o7 = (size_t)min(7, last) * rs;
    const size_t o8 = (size_t)min(8, last) * rs, o9 = (size_t)min(9, last) * rs;
    const size_t o10 = (size_t)min(10, last) * rs, o11 = (size_t)min(11, last) * rs;
#endif
    const int col0 = bdirect ? min(j * GEMM_NR, N - GEMM_NR) : j * GEMM_NR;
    const int ldb = bdirect ? N : GEMM_NR;
    const __global float *bp = B + (size_t)b * sb + (size_t)k0 * ldb
                               + (bdirect ? (size_t)col0 : (size_t)j * K * GEMM_NR);

    float8 c00 = 0.0f, c01 = 0.0f, c10 = 0.0f, c11 = 0.0f, c20 = 0.0f, c21 = 0.0f;
    float8 c30 = 0.0f, c31 = 0.0f, c40 = 0.0f, c41 = 0.0f, c50 = 0.0f, c51 = 0.0f;
#define GEMM_ROW(r, o) av = a0[o]; c##r##0 = av * b0 + c##r##0; c##r##1 = av * b1 + c##r##1
#if GEMM_MR == 12
    float8 c60 = 0.0f, c61 = 0.0f, c70 = 0.0f, c71 = 0.0f, c80 = 0.0f, c81 = 0.0f;
    float8 c90 = 0.0f, c91 = 0.0f, cA0 = 0.0f, cA1 = 0.0f, cB0 = 0.0f, cB1 = 0.0f;
#define GEMM_ROWS_HI GEMM_ROW(6, o6); GEMM_ROW(7, o7); GEMM_ROW(8, o8); GEMM_ROW(9, o9); \
                     GEMM_ROW(A, o10); GEMM_ROW(B, o11)
#else
#define GEMM_ROWS_HI
#endif
#define GEMM_STEP(B0, B1) { \
        const float8 b0 = B0, b1 = B1; float av; \
        GEMM_ROW(0, 0); GEMM_ROW(1, o1); GEMM_ROW(2, o2); GEMM_ROW(3, o3); GEMM_ROW(4, o4); \
        GEMM_ROW(5, o5); GEMM_ROWS_HI; \
        a0 += cs; }
    if (bdirect) {  /* unaligned rows of B */
        for (int k = 0; k < n; ++k) {
            GEMM_STEP(GEMM_LD8(bp), GEMM_LD8(bp + 8));
            bp += ldb;
        }
    } else {  /* aligned packed panel: plain float8 loads */
        const __global float8 *bp8 = (const __global float8 *)bp;
        for (int k = 0; k < n; ++k) {
            GEMM_STEP(bp8[0], bp8[1]);
            bp8 += 2;
        }
    }

    const int lo = j * GEMM_NR - col0, hi = min(GEMM_NR, N - col0);
    __global float *c = C + (size_t)s * sc + (size_t)b * scb + (size_t)(i * GEMM_MR) * ldc + col0;
    if (nrows == GEMM_MR && lo == 0 && hi == GEMM_NR && beta == 0.0f) {  /* the common case */
        GEMM_ST8(alpha * c00, c); GEMM_ST8(alpha * c01, c + 8); c += ldc;
        GEMM_ST8(alpha * c10, c); GEMM_ST8(alpha * c11, c + 8); c += ldc;
        GEMM_ST8(alpha * c20, c); GEMM_ST8(alpha * c21, c + 8); c += ldc;
        GEMM_ST8(alpha * c30, c); GEMM_ST8(alpha * c31, c + 8); c += ldc;
        GEMM_ST8(alpha * c40, c); GEMM_ST8(alpha * c41, c + 8); c += ldc;
        GEMM_ST8(alpha * c50, c); GEMM_ST8(alpha * c51, c + 8);
#if GEMM_MR == 12
        c += ldc; GEMM_ST8(alpha * c60, c); GEMM_ST8(alpha * c61, c + 8); c += ldc;
        GEMM_ST8(alpha * c70, c); GEMM_ST8(alpha * c71, c + 8); c += ldc;
        GEMM_ST8(alpha * c80, c); GEMM_ST8(alpha * c81, c + 8); c += ldc;
        GEMM_ST8(alpha * c90, c); GEMM_ST8(alpha * c91, c + 8); c += ldc;
        GEMM_ST8(alpha * cA0, c); GEMM_ST8(alpha * cA1, c + 8); c += ldc;
        GEMM_ST8(alpha * cB0, c); GEMM_ST8(alpha * cB1, c + 8);
#endif
        return;
    }
    gemm_store_row(c, c00, c01, lo, hi, alpha, beta);
    if (nrows > 1) gemm_store_row(c + (size_t)ldc, c10, c11, lo, hi, alpha, beta);
    if (nrows > 2) gemm_store_row(c + (size_t)2 * ldc, c20, c21, lo, hi, alpha, beta);
    if (nrows > 3) gemm_store_row(c + (size_t)3 * ldc, c30, c31, lo, hi, alpha, beta);
    if (nrows > 4) gemm_store_row(c + (size_t)4 * ldc, c40, c41, lo, hi, alpha, beta);
    if (nrows > 5) gemm_store_row(c + (size_t)5 * ldc, c50, c51, lo, hi, alpha, beta);
#if GEMM_MR == 12
    if (nrows > 6) gemm_store_row(c + (size_t)6 * ldc, c60, c61, lo, hi, alpha, beta);
    if (nrows > 7) gemm_store_row(c + (size_t)7 * ldc, c70, c71, lo, hi, alpha, beta);
    if (nrows > 8) gemm_store_row(c + (size_t)8 * ldc, c80, c81, lo, hi, alpha, beta);
    if (nrows > 9) gemm_store_row(c + (size_t)9 * ldc, c90, c91, lo, hi, alpha, beta);
    if (nrows > 10) gemm_store_row(c + (size_t)10 * ldc, cA0, cA1, lo, hi, alpha, beta);
    if (nrows > 11) gemm_store_row(c + (size_t)11 * ldc, cB0, cB1, lo, hi, alpha, beta);
#endif
}

/* op(A) read in place through strides (row panel stride GEMM_MR*rs). */
KERNEL void gemm_6x16(const int M, const int N, const int K, const int nbatch,
                      __global const float *A, const int sa, const int rs, const int cs,
                      __global const float *B, const int sb, const int bdirect,
                      __global float *C, const int ldc, const int scb, const int sc,
                      const int kb, const int ke, const int kc, const int rb,
                      const float alpha, const float beta)
{
    gemm_block(M, N, K, nbatch, A, 0, sa, GEMM_MR * rs, rs, cs, B, sb, bdirect, C, ldc, scb, sc,
               kb, ke, kc, rb, alpha, beta);
}

/* op(A) packed by gemm_pack_a: panel i at Ap + i*MR*K, element (r, k) at + MR*k + r. */
KERNEL void gemm_6x16_packed(const int M, const int N, const int K, const int nbatch,
                             __global const float *Ap, __global const float *B, const int sb,
                             const int bdirect, __global float *C, const int ldc,
                             const int scb, const int sc, const int kb, const int ke,
                             const int kc, const int rb, const float alpha, const float beta)
{
    const int mpanels = (M + GEMM_MR - 1) / GEMM_MR;
    gemm_block(M, N, K, nbatch, Ap, 1, mpanels * K * GEMM_MR, K * GEMM_MR, 1, GEMM_MR, B, sb,
               bdirect, C, ldc, scb, sc, kb, ke, kc, rb, alpha, beta);
}

/* C[e] = alpha * sum_s P[s*n + e] + beta * C[e], slices added in order; 8 elements per
 * work-item (the last work-item takes the ragged tail). */
KERNEL void gemm_splitk_reduce(__global const float *P, const int nsplit, const int n,
                               __global float *C, const float alpha, const float beta)
{
    const int e0 = get_global_id(0) * 8;
    if (e0 >= n)
        return;
    if (e0 + 8 <= n) {
        float8 acc = 0.0f;
        for (int s = 0; s < nsplit; ++s)
            acc += GEMM_LD8(P + (size_t)s * n + e0);
        acc = alpha * acc;
        if (beta != 0.0f)
            acc = beta * GEMM_LD8(C + e0) + acc;
        GEMM_ST8(acc, C + e0);
    } else {
        for (int e = e0; e < n; ++e) {
            float acc = 0.0f;
            for (int s = 0; s < nsplit; ++s)
                acc += P[(size_t)s * n + e];
            acc = alpha * acc;
            C[e] = beta != 0.0f ? beta * C[e] + acc : acc;
        }
    }
}
