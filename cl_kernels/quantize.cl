/* Shared (quantized) weights: the centroid gradient as a segmented sum.
 * The other half of codebook fine-tuning, weights = codebook[assignments], is csr_gather.
 * No float atomics: one work-group per segment, a strided partial sum per work-item, then a
 * fixed-order tree in local memory, so every result is deterministic. */

/* out[s] = sum of values[order[j]] for offsets[s] <= j < offsets[s+1] (0 when empty).
 * Work-group s, local size a power of two; part holds one float per work-item. */
kernel void quantize_segment_sum(global const float* values, global const int* order,
                                 global const int* offsets, global float* out,
                                 local float* part)
{
    const int s = get_group_id(0);
    const int lid = get_local_id(0);
    const int ls = get_local_size(0);
    const int hi = offsets[s + 1];
    float acc = 0.0f;
    for (int j = offsets[s] + lid; j < hi; j += ls) acc += values[order[j]];
    part[lid] = acc;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int w = ls >> 1; w > 0; w >>= 1) {
        if (lid < w) part[lid] += part[lid + w];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (lid == 0) out[s] = part[0];
}

/* Nearest centroid of each value, for quantization-aware retraining: out[i] = the number of
 * midpoints mids[j] (ascending, between consecutive centroids) below values[i], found by
 * binary search; equals numpy.searchsorted(mids, values) (side 'left'). */
kernel void quantize_nearest(global const float* values, const int n, global const float* mids,
                             const int nmids, global int* out)
{
    const int i = get_global_id(0);
    if (i >= n) return;
    const float v = values[i];
    int lo = 0, hi = nmids;
    while (lo < hi) {
        const int mid = (lo + hi) >> 1;
        if (mids[mid] < v) lo = mid + 1; else hi = mid;
    }
    out[i] = lo;
}
