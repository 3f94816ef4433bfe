/* Permuted block-diagonal weights (MPDCompress, issue 18): the gather and scatter around one
 * batched GEMM per block.
 *
 * A weight W (R, C) whose rows and columns, once permuted, form B dense diagonal blocks of at
 * most rb x cb entries is held as blocks (B, rb, cb). A product with it is
 *   pack   : xb[b, m, j] = x[m, index[b*nb + j]]   (0 where index < 0: padding of short blocks)
 *   gemm   : one batched dense GEMM over the B blocks
 *   unpack : y[m, n]     = yb[pos[n] / nb, m, pos[n] % nb]  (every column n sits in one block)
 * Both kernels are pure data movement: consecutive work-items in dimension 0 write
 * consecutive floats of one row, so the stores are contiguous and only the
 * loads follow the permutation. */

/* x (m, n) -> out (B, m, nb); global (B*nb, m). */
kernel void block_pack(global const float* x, global const int* index, global float* out,
                       const int m, const int n, const int nb, const int total)
{
    const int p = get_global_id(0);
    const int r = get_global_id(1);
    if (p >= total || r >= m) return;
    const int b = p / nb;
    const int c = index[p];
    out[((size_t)b * m + r) * nb + (p - b * nb)] = c >= 0 ? x[(size_t)r * n + c] : 0.0f;
}

/* xb (B, m, nb) -> out (m, n); global (n, m). */
kernel void block_unpack(global const float* xb, global const int* pos, global float* out,
                         const int m, const int n, const int nb)
{
    const int c = get_global_id(0);
    const int r = get_global_id(1);
    if (c >= n || r >= m) return;
    const int p = pos[c];
    const int b = p / nb;
    out[(size_t)r * n + c] = xb[((size_t)b * m + r) * nb + (p - b * nb)];
}
