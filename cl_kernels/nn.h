/* Helpers shared by the nn kernels (cl_nn.py): PoCL-friendly min/load/store forms,
 * deterministic work-group reductions, the float8 soft-threshold and the lane split of the
 * per-channel kernels. Plain OpenCL C 1.2. */
#ifndef MINIDNN_NN_H
#define MINIDNN_NN_H

#include "common.h"

/* PoCL calls the min/max builtins as functions (no inlining, no vectorization): use these. */
inline int imin(int a, int b) { return a < b ? a : b; }
inline uint umin(uint a, uint b) { return a < b ? a : b; }

/* Unaligned float4/float8 load and store. PoCL calls vload/vstore (and select, min, max) as
 * functions; scalar accesses like these are merged by LLVM into one vector access. */
#define LD4(p) (float4)((p)[0], (p)[1], (p)[2], (p)[3])
#define LD8(p) (float8)((p)[0], (p)[1], (p)[2], (p)[3], (p)[4], (p)[5], (p)[6], (p)[7])
#define ST4(v, p) do {                                                                      \
        __global float* q_ = (p); const float4 v_ = (v);                                    \
        q_[0] = v_.s0; q_[1] = v_.s1; q_[2] = v_.s2; q_[3] = v_.s3;                         \
    } while (0)
#define ST8(v, p) do {                                                                      \
        __global float* q_ = (p); const float8 v_ = (v);                                    \
        q_[0] = v_.s0; q_[1] = v_.s1; q_[2] = v_.s2; q_[3] = v_.s3;                         \
        q_[4] = v_.s4; q_[5] = v_.s5; q_[6] = v_.s6; q_[7] = v_.s7;                         \
    } while (0)

/* Loops with a constant trip count are not unrolled by PoCL unless asked. */
#define UNROLL _Pragma("unroll")

/* Largest work-group size the reduction kernels are launched with (a power of two). */
#define RED_LS_MAX 256

/* Sum of v over the work-group, returned to every lane. Fixed tree order: deterministic.
 * Every lane must call it; the local size must be a power of two <= RED_LS_MAX. */
#define DEFINE_GROUP_SUM(NAME, T)                                                      \
    inline T NAME(T v, __local T* s) {                                                 \
        const uint lid = get_local_id(0);                                              \
        s[lid] = v;                                                                    \
        barrier(CLK_LOCAL_MEM_FENCE);                                                  \
        for (uint h = get_local_size(0) >> 1; h > 0; h >>= 1) {                        \
            if (lid < h) s[lid] += s[lid + h];                                         \
            barrier(CLK_LOCAL_MEM_FENCE);                                              \
        }                                                                              \
        const T r = s[0];                                                              \
        barrier(CLK_LOCAL_MEM_FENCE);                                                  \
        return r;                                                                      \
    }
DEFINE_GROUP_SUM(group_sum_f, float)
DEFINE_GROUP_SUM(group_sum_i, int)

/* soft_threshold1 on eight lanes: sign(w) * max(|w| - t, 0). */
inline float8 soft_threshold8(float8 w, float t) {
    return w > t ? w - t : (w < -t ? w + t : (float8)(0.0f));
}

/* Lane split of the per-channel kernels (one work-group per channel c of x viewed as
 * (N, C, P)): lp = 2^lp_log2 lanes share a plane, each taking a contiguous run of it
 * [pb, pe) (float4 loads); the LS/lp lane rows take the planes n = n0, n0 + nstep, ... */
#define CHANNEL_LANES(P, lp_log2)                                                            \
    const uint lq_ = get_local_id(0) & ((1u << (lp_log2)) - 1u);                             \
    const uint n0 = get_local_id(0) >> (lp_log2), nstep = get_local_size(0) >> (lp_log2);   \
    const uint chunk_ = (((P) >> (lp_log2)) + 4u) & ~3u;                                     \
    const uint pb = umin(lq_ * chunk_, (P)), pe = umin(pb + chunk_, (P))

/* Sum of channel c over the lane's share (CHANNEL_LANES) of x viewed as (N, C, P). */
inline float lane_channel_sum(__global const float* x, const uint N, const uint C,
                              const uint P, const uint c, const uint lp_log2) {
    CHANNEL_LANES(P, lp_log2);
    float4 a4 = (float4)(0.0f);
    float a = 0.0f;
    for (uint n = n0; n < N; n += nstep) {
        const __global float* xp = x + ((size_t)n * C + c) * P;
        uint p = pb;
        for (; p + 4 <= pe; p += 4) a4 += LD4(xp + p);
        for (; p < pe; ++p) a += xp[p];
    }
    return a + ((a4.x + a4.y) + (a4.z + a4.w));
}

#endif
