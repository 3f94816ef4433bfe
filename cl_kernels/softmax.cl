/* Softmax cross-entropy and accuracy count (cl_nn.py). One work-group (global size = local
 * size) walks the N rows of the (N, K) logits, lane r taking rows r, r + LS, ...; the per-lane
 * partials meet in a fixed-order tree reduction, so results are deterministic. */
#include "nn.h"

/* loss[0] = mean_r (logsumexp(z_r) - z_r[label_r]); grad = (softmax(z) - onehot) / N. */
KERNEL void softmax_xent(__global const float* logits, __global const int* labels,
                         __global float* loss, __global float* grad, const int N,
                         const int K) {
    __local float scratch[RED_LS_MAX];
    const float fn = (float)N;
    float acc = 0.0f;
    for (int r = get_local_id(0); r < N; r += get_local_size(0)) {
        const __global float* z = logits + (size_t)r * K;
        __global float* d = grad + (size_t)r * K;
        float m = z[0];
        for (int j = 1; j < K; ++j) m = z[j] > m ? z[j] : m;
        float s = 0.0f;
        for (int j = 0; j < K; ++j) s += exp(z[j] - m);
        const float logsum = log(s);
        const int label = labels[r];
        for (int j = 0; j < K; ++j) {
            const float p = exp((z[j] - m) - logsum);
            d[j] = (j == label ? p - 1.0f : p) / fn;
        }
        if (label >= 0 && label < K) acc += logsum - (z[label] - m);
    }
    const float total = group_sum_f(acc, scratch);
    if (get_local_id(0) == 0) loss[0] = total / fn;
}

/* out[0] = number of rows whose first maximum is at the label. */
KERNEL void count_correct(__global const float* logits, __global const int* labels,
                          __global int* out, const int N, const int K) {
    __local int scratch[RED_LS_MAX];
    int acc = 0;
    for (int r = get_local_id(0); r < N; r += get_local_size(0)) {
        const __global float* z = logits + (size_t)r * K;
        float m = z[0];
        int arg = 0;
        for (int j = 1; j < K && m == m; ++j)  /* like np.argmax: the first NaN wins */
            if (z[j] > m || z[j] != z[j]) { m = z[j]; arg = j; }
        acc += arg == labels[r] ? 1 : 0;
    }
    const int total = group_sum_i(acc, scratch);
    if (get_local_id(0) == 0) out[0] = total;
}
