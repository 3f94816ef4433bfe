/* Permuted block-diagonal weights (MPDCompress, issue 18): products through the blocks.
 *
 * A weight W (R, C) whose rows and columns, once permuted, form B dense diagonal blocks of at
 * most rb x cb entries is held as blocks (B, rb, cb). A product with it is
 *   pack   : xb[b, m, j] = x[m, index[b*nb + j]]   (0 where index < 0: padding of short blocks)
 *   gemm   : one batched dense GEMM over the B blocks
 *   unpack : y[m, index'[b*nb' + i]] = yb[b, m, i]  (every column sits in one block)
 * block_pack is that gather (the weight gradient packs x and dy, then one batched GEMM);
 * block_matmul runs the forward and input-gradient products with pack and unpack folded into
 * its indexing. */

/* x (m, n) -> out (B, m, nb); global (B, m): one work-item per block row, nb contiguous
 * stores. (On PoCL's CPU device one work-item per float cost ~25 ns each in work-group
 * overhead; a whole block row per work-item runs at ~0.5 ns per float.) */
kernel void block_pack(global const float* x, global const int* index, global float* out,
                       const int m, const int n, const int nb, const int nblocks)
{
    const int b = get_global_id(0);
    const int r = get_global_id(1);
    if (b >= nblocks || r >= m) return;
    global const float* row = x + (size_t)r * n;
    global const int* idx = index + (size_t)b * nb;
    global float* o = out + ((size_t)b * m + r) * nb;
    for (int j = 0; j < nb; ++j) {
        const int c = idx[j];
        o[j] = c >= 0 ? row[c] : 0.0f;
    }
}

/* The forward and input-gradient products with the gathers folded into the indexing (no
 * packed copies, one launch):
 *   out[m, oidx[b*no + o]] = sum_k x[m, iidx[b*nk + k]] * w[b, k, o],   w (B, nk, no)
 * Forward: x by the column index, w the blocks transposed (B, cb, rb), out by the row index;
 * input gradient: dy by the row index, w the blocks as stored (B, rb, cb), out by the column
 * index. Index -1 marks padding, which sits at the end of a block's run: the k loop stops
 * before it, and padded outputs are not written. Every output column belongs to exactly one
 * block (the runs of a permutation partition the columns), so the work-items' writes cover
 * ``out`` and never overlap (no atomics, no zero-fill). Optional epilogue (inference plans):
 * + bias[column], then ReLU.
 * Register block as gemm_6x16: block b, rows m0..m0+5, outputs o0..o0+15 (two float8 of w per
 * k: 96 multiply-adds per 6 gathered x loads); global (B * ceil(no / 16), ceil(m / 6)). */
#define BLK_MR 6
#define BLK_NR 16
#define BLK_ROW(i) global const float* x##i = m0 + i < m ? x0 + (size_t)i * n_in : x0
#define BLK_STEP(i) { const float v = x##i[c]; c##i##0 += v * w0; c##i##1 += v * w1; }

/* the 8 outputs o0+t0 .. o0+t0+7 of row k of a block. Lanes past the last output are never
 * stored, so while 8 floats remain in the buffer (``room``) one vector load serves (its extra
 * lanes read the next row's weights); only at the buffer's end are the loads clamped. */
inline float8 block_w8(global const float* wk, const int t0, const int last, const int room)
{
    if (t0 > last) return (float8)(0.0f);
    if (t0 + 7 <= last || t0 + 8 <= room) return vload8(0, wk + t0);
    return (float8)(wk[min(t0, last)], wk[min(t0 + 1, last)], wk[min(t0 + 2, last)],
                    wk[min(t0 + 3, last)], wk[min(t0 + 4, last)], wk[min(t0 + 5, last)],
                    wk[min(t0 + 6, last)], wk[min(t0 + 7, last)]);
}

/* row r of the tile (rows < the rows left), outputs o0+t with t <= last; the epilogue of
 * inference plans: + bias[col] (if any), then max(., 0) if relu */
inline void block_store(global float* out, global const int* ob, const float8 lo,
                        const float8 hi, const int last, global const float* bias,
                        const int has_bias, const int relu)
{
    const float v[16] = {lo.s0, lo.s1, lo.s2, lo.s3, lo.s4, lo.s5, lo.s6, lo.s7,
                         hi.s0, hi.s1, hi.s2, hi.s3, hi.s4, hi.s5, hi.s6, hi.s7};
    for (int t = 0; t < BLK_NR && t <= last; ++t) {
        const int col = ob[t];
        if (col < 0) continue;
        float y = has_bias ? v[t] + bias[col] : v[t];
        out[col] = relu ? fmax(y, 0.0f) : y;
    }
}

kernel void block_matmul(global const float* x, global const int* iidx, global const float* w,
                         global const int* oidx, global float* out, const int m,
                         const int n_in, const int n_out, const int nk, const int no,
                         const int nblocks, global const float* bias, const int has_bias,
                         const int relu)
{
    const int groups = (no + BLK_NR - 1) / BLK_NR;
    const int b = get_global_id(0) / groups;
    const int o0 = (get_global_id(0) - b * groups) * BLK_NR;
    const int m0 = get_global_id(1) * BLK_MR;
    if (b >= nblocks || m0 >= m) return;
    /* rows past m read row m0 again, outputs past no output no-1 (neither is written) */
    global const float* x0 = x + (size_t)m0 * n_in;
    BLK_ROW(1); BLK_ROW(2); BLK_ROW(3); BLK_ROW(4); BLK_ROW(5);
    global const float* wb = w + (size_t)b * nk * no + o0;
    global const int* ib = iidx + (size_t)b * nk;
    const int last = no - 1 - o0;
    const int wlen = nblocks * nk * no;
    int kend = nk;
    while (kend > 0 && ib[kend - 1] < 0) --kend;
    float8 c00 = 0.0f, c01 = 0.0f, c10 = 0.0f, c11 = 0.0f, c20 = 0.0f, c21 = 0.0f,
           c30 = 0.0f, c31 = 0.0f, c40 = 0.0f, c41 = 0.0f, c50 = 0.0f, c51 = 0.0f;
    for (int k = 0; k < kend; ++k) {
        const int c = ib[k];
        global const float* wk = wb + (size_t)k * no;
        const int room = wlen - (int)(wk - w);
        const float8 w0 = block_w8(wk, 0, last, room), w1 = block_w8(wk, 8, last, room);
        BLK_STEP(0) BLK_STEP(1) BLK_STEP(2) BLK_STEP(3) BLK_STEP(4) BLK_STEP(5)
    }
    global const int* ob = oidx + (size_t)b * no + o0;
    global float* o = out + (size_t)m0 * n_out;
    const int rows = min(BLK_MR, m - m0);
    block_store(o, ob, c00, c01, last, bias, has_bias, relu);
    if (rows > 1) block_store(o + n_out, ob, c10, c11, last, bias, has_bias, relu);
    if (rows > 2) block_store(o + 2 * (size_t)n_out, ob, c20, c21, last, bias, has_bias, relu);
    if (rows > 3) block_store(o + 3 * (size_t)n_out, ob, c30, c31, last, bias, has_bias, relu);
    if (rows > 4) block_store(o + 4 * (size_t)n_out, ob, c40, c41, last, bias, has_bias, relu);
    if (rows > 5) block_store(o + 5 * (size_t)n_out, ob, c50, c51, last, bias, has_bias, relu);
}
