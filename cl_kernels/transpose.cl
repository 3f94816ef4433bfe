/* Permuted copies of up to 4-D arrays of 4-byte elements (moved as uint, bits unchanged).
 *
 * The host coalesces the permutation and passes the output shape d0..d3 (row-major, written
 * contiguously) with the input stride s0..s3 of each output axis.
 * - transpose_rows: s3 == 1, the innermost axis stays innermost: 64-element row pieces.
 * - transpose_tiles: the input's contiguous axis is output axis u != 3: each work-item moves an
 *   8x8 tile (8 float8-wide reads along u, a register transpose, 8 float8-wide writes along 3).
 */

#include "common.h"

/* Unaligned 8-element load/store as scalar accesses (LLVM merges them; vload8/vstore8 ran 2-3x
 * slower on PoCL). */
#define TR_LD8(p) (uint8)((p)[0], (p)[1], (p)[2], (p)[3], (p)[4], (p)[5], (p)[6], (p)[7])
#define TR_ST8(v, p) do { \
        __global uint *q_ = (p); const uint8 v_ = (v); \
        q_[0] = v_.s0; q_[1] = v_.s1; q_[2] = v_.s2; q_[3] = v_.s3; \
        q_[4] = v_.s4; q_[5] = v_.s5; q_[6] = v_.s6; q_[7] = v_.s7; \
    } while (0)

KERNEL void transpose_rows(__global const uint *in, __global uint *out,
                           const int d0, const int d1, const int d2, const int d3,
                           const int s0, const int s1, const int s2, const int s3)
{
    const int c0 = get_global_id(0) * 64;
    const int i2 = get_global_id(1);
    const int i01 = get_global_id(2);
    if (c0 >= d3 || i2 >= d2 || i01 >= d0 * d1)
        return;
    const int i0 = i01 / d1, i1 = i01 % d1;
    const __global uint *src = in + (size_t)i0 * s0 + (size_t)i1 * s1 + (size_t)i2 * s2;
    __global uint *dst = out + ((size_t)i01 * d2 + i2) * d3;
    const int c1 = min(d3, c0 + 64);
    int c = c0;
    for (; c + 8 <= c1; c += 8)
        TR_ST8(TR_LD8(src + c), dst + c);
    for (; c < c1; ++c)
        dst[c] = src[c];
}

#define TROW(S) (uint8)(v0.S, v1.S, v2.S, v3.S, v4.S, v5.S, v6.S, v7.S)

/* Output axis 3 (n3 long, input stride s3) against output axis u (nu long, input stride 1,
 * output stride osu); the two other axes (n0 x n1, flattened in g) are plain offsets. */
KERNEL void transpose_tiles(__global const uint *in, __global uint *out,
                            const int n3, const int s3, const int nu, const int osu,
                            const int n1, const int n01, const int is0, const int os0,
                            const int is1, const int os1)
{
    const int t3 = get_global_id(0) * 8;
    const int tu = get_global_id(1) * 8;
    const int g = get_global_id(2);
    if (t3 >= n3 || tu >= nu || g >= n01)
        return;
    const int g0 = g / n1, g1 = g % n1;
    const __global uint *src = in + (size_t)g0 * is0 + (size_t)g1 * is1 + (size_t)t3 * s3 + tu;
    __global uint *dst = out + (size_t)g0 * os0 + (size_t)g1 * os1 + (size_t)tu * osu + t3;
    const size_t su = osu, ss = s3;
    const int nr = min(8, nu - tu), nc = min(8, n3 - t3);
    if (nr == 8 && nc == 8) {
        /* v_c = 8 consecutive input elements along u at output column t3 + c */
        const uint8 v0 = TR_LD8(src), v1 = TR_LD8(src + ss);
        const uint8 v2 = TR_LD8(src + 2 * ss), v3 = TR_LD8(src + 3 * ss);
        const uint8 v4 = TR_LD8(src + 4 * ss), v5 = TR_LD8(src + 5 * ss);
        const uint8 v6 = TR_LD8(src + 6 * ss), v7 = TR_LD8(src + 7 * ss);
        TR_ST8(TROW(s0), dst);
        TR_ST8(TROW(s1), dst + su);
        TR_ST8(TROW(s2), dst + 2 * su);
        TR_ST8(TROW(s3), dst + 3 * su);
        TR_ST8(TROW(s4), dst + 4 * su);
        TR_ST8(TROW(s5), dst + 5 * su);
        TR_ST8(TROW(s6), dst + 6 * su);
        TR_ST8(TROW(s7), dst + 7 * su);
    } else if (nc == 8) {  /* short along u: gather each output row */
        for (int r = 0; r < nr; ++r) {
            const __global uint *p = src + r;
            TR_ST8((uint8)(p[0], p[ss], p[2 * ss], p[3 * ss], p[4 * ss], p[5 * ss], p[6 * ss],
                           p[7 * ss]), dst + r * su);
        }
    } else {
        for (int r = 0; r < nr; ++r)
            for (int c = 0; c < nc; ++c)
                dst[r * su + c] = src[r + c * ss];
    }
}
