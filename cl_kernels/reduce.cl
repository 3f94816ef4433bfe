/* Deterministic reductions (cl_nn.py): per-channel sums and whole-array sum / zero count.
 * No atomics: each output is written by one work-group after a fixed-order tree reduction
 * (or, for column sums, by one work-item summing in order). */
#include "nn.h"

/* out[c] (+)= sum_{n,p} x[n, c, p]; one work-group per channel (global size C * LS). */
KERNEL void channel_sum(__global const float* x, __global float* out, const uint N,
                        const uint C, const uint P, const uint lp_log2, const int accumulate) {
    __local float scratch[RED_LS_MAX];
    const uint c = get_group_id(0);
    const float total = group_sum_f(lane_channel_sum(x, N, C, P, c, lp_log2), scratch);
    if (get_local_id(0) == 0) out[c] = accumulate ? out[c] + total : total;
}

/* P = 1 (x is (N, C), e.g. a linear layer's bias gradient): one work-item per column c sums
 * its N entries in order (no barriers; neighbours read neighbouring memory). Global size C. */
KERNEL void column_sum(__global const float* x, __global float* out, const uint N,
                       const uint C, const int accumulate) {
    const uint c = get_global_id(0);
    if (c >= C) return;
    float a0 = 0.0f, a1 = 0.0f;  /* two chains: half the add latency */
    uint n = 0;
    for (; n + 2 <= N; n += 2) {
        a0 += x[(size_t)n * C + c];
        a1 += x[(size_t)(n + 1) * C + c];
    }
    if (n < N) a0 += x[(size_t)n * C + c];
    const float total = a0 + a1;
    out[c] = accumulate ? out[c] + total : total;
}

/* Stage 1 of a whole-array sum: group g sums chunk [g*chunk, (g+1)*chunk) of a[0, n), each
 * lane a contiguous run of chunk / LS floats (float4 loads; chunk a multiple of 4 * LS), and
 * writes partial[g]. With one group partial is the result; stage 2 reuses it on partials. */
KERNEL void sum_partial(__global const float* a, __global float* partial, const uint n,
                        const uint chunk) {
    __local float scratch[RED_LS_MAX];
    const uint sub = chunk / get_local_size(0);
    const uint begin = umin(get_group_id(0) * chunk + get_local_id(0) * sub, n);
    const uint end = umin(begin + sub, n);
    float4 acc = (float4)(0.0f);
    uint i = begin;
    for (; i + 4 <= end; i += 4) acc += LD4(a + i);
    for (; i < end; ++i) acc.x += a[i];
    const float total = group_sum_f((acc.x + acc.y) + (acc.z + acc.w), scratch);
    if (get_local_id(0) == 0) partial[get_group_id(0)] = total;
}

/* Stage 1 of counting exact zeros (float input): like sum_partial, int results. */
KERNEL void count_zeros_partial(__global const float* a, __global int* partial,
                                const uint n, const uint chunk) {
    __local int scratch[RED_LS_MAX];
    const uint sub = chunk / get_local_size(0);
    const uint begin = umin(get_group_id(0) * chunk + get_local_id(0) * sub, n);
    const uint end = umin(begin + sub, n);
    int4 acc = (int4)(0);
    uint i = begin;
    for (; i + 4 <= end; i += 4) acc -= (LD4(a + i) == 0.0f);  /* true is -1 */
    for (; i < end; ++i) acc.x += a[i] == 0.0f ? 1 : 0;
    const int total = group_sum_i((acc.x + acc.y) + (acc.z + acc.w), scratch);
    if (get_local_id(0) == 0) partial[get_group_id(0)] = total;
}

/* Stage 2 of count_zeros: one group sums the int partials. */
KERNEL void sum_int(__global const int* partial, __global int* out, const uint n) {
    __local int scratch[RED_LS_MAX];
    int acc = 0;
    for (uint i = get_local_id(0); i < n; i += get_local_size(0)) acc += partial[i];
    const int total = group_sum_i(acc, scratch);
    if (get_local_id(0) == 0) out[0] = total;
}
