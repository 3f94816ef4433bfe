/* Sparse CSR kernels: compaction, transpose (CSC), and the three products of a sparse layer.
 *
 * Layout conventions (see minidnn/backend/base.py, "CSR"):
 *   W (O, K) in CSR: row_ptr (O+1), col_idx (nnz), values (nnz), int32 indices, columns ascending.
 *   Grouped: rows g*og .. (g+1)*og-1 (og = O/G) form group g; x is (G, M, K), y is (G, M, og).
 *
 * The products (forward x W^T, backward dy W through the transposed CSR, and the weight gradient
 * on the pattern, SDDMM) have two forms each, picked by the host from the shapes:
 * - "panel": the dense operand is first repacked into a blocked panel, where each block of B rows
 *   m is stored transposed as a contiguous (K, B) tile. A nonzero in column k then needs one
 *   aligned 16-float (64-byte) read covering 16 rows m: two float8 multiply-adds per nonzero.
 * - "gather": no repacking, scalar reads of x[m, col] gathered into float8 over 8 rows (or 8
 *   nonzeros); cheaper when nonzeros are few relative to the repacking cost, or M is tiny.
 * For M of 1..3 (batch 1), the forward/backward products use a plain one-output-per-work-item
 * kernel ("scalar").
 * No float atomics anywhere: long reductions over M are split into chunks whose partial sums are
 * added in a fixed order, so every result is deterministic.
 * On PoCL, a*b + c is written out (fma()/mad() are far slower there) and vectors are explicit.
 */
#include "common.h"

#define MBLK 16 /* rows m per work-item in the products; panels are padded to a multiple */

/* ------------------------------------------------------------------ scan (one work-group) */

/* In place exclusive scan of a[0..n) into a[0..n], a[n] = total: every work-item scans a
 * contiguous chunk, the chunk sums are scanned by work-item 0 in local memory. Launch exactly
 * one work-group; `sums` holds get_local_size(0) ints. Deterministic (integer, fixed order). */
kernel void csr_scan_exclusive(global int* a, const int n, local int* sums)
{
    const int lid = get_local_id(0), nl = get_local_size(0);
    const int chunk = (n + nl - 1) / nl;
    const int begin = min(n, lid * chunk), end = min(n, begin + chunk);
    int s = 0;
    for (int i = begin; i < end; ++i) s += a[i];
    sums[lid] = s;
    barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE);
    if (lid == 0) {
        int run = 0;
        for (int i = 0; i < nl; ++i) { const int t = sums[i]; sums[i] = run; run += t; }
        a[n] = run;
    }
    barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE);
    int run = sums[lid];
    for (int i = begin; i < end; ++i) { const int t = a[i]; a[i] = run; run += t; }
}

/* ------------------------------------------------------------------ dense <-> CSR */

/* counts[r] = number of nonzeros of row r of the dense (R, C) matrix w. */
kernel void csr_count_rows(global const float* w, const int R, const int C, global int* counts)
{
    const int r = get_global_id(0);
    if (r >= R) return;
    global const float* p = w + (size_t)r * C;
    int n = 0;
    for (int c = 0; c < C; ++c) n += p[c] != 0.0f ? 1 : 0;
    counts[r] = n;
}

/* Writes the nonzeros of row r at row_ptr[r].. in ascending column order. */
kernel void csr_fill_rows(global const float* w, const int R, const int C,
                          global const int* row_ptr, global int* col_idx, global float* values)
{
    const int r = get_global_id(0);
    if (r >= R) return;
    global const float* p = w + (size_t)r * C;
    int e = row_ptr[r];
    for (int c = 0; c < C; ++c) {
        const float v = p[c];
        if (v != 0.0f) { col_idx[e] = c; values[e] = v; ++e; }
    }
}

/* dense[r, col_idx[e]] = values[e] for the nonzeros of row r (dense zeroed beforehand). */
kernel void csr_scatter_rows(global const int* row_ptr, global const int* col_idx,
                             global const float* values, const int R, const int C,
                             global float* dense)
{
    const int r = get_global_id(0);
    if (r >= R) return;
    global float* d = dense + (size_t)r * C;
    const int end = row_ptr[r + 1];
    for (int e = row_ptr[r]; e < end; ++e) d[col_idx[e]] = values[e];
}

/* out[i] = src[index[i]] (float or int payloads have the same size: copied as bits). */
kernel void csr_gather(global const uint* src, global const int* index, const int n,
                       global uint* out)
{
    const int i = get_global_id(0);
    if (i < n) out[i] = src[index[i]];
}

/* ------------------------------------------------------------------ transpose (CSC) */

/* counts[g*K + k] += 1 for every nonzero (o, k) of row o (int atomics: the totals are exact). */
kernel void csr_count_cols(global const int* row_ptr, global const int* col_idx, const int O,
                           const int K, const int og, global int* counts)
{
    const int o = get_global_id(0);
    if (o >= O) return;
    global int* cnt = counts + (size_t)(o / og) * K;
    const int end = row_ptr[o + 1];
    for (int e = row_ptr[o]; e < end; ++e) atomic_inc(cnt + col_idx[e]);
}

/* Stable fill of the transpose: one work-group per group g walks its rows o in order; the
 * work-items split the nonzeros of one row, whose columns are distinct, so each bumps its own
 * cursor and no atomics are needed; a barrier between rows keeps the rows in ascending order.
 * cursor starts as a copy of t_row_ptr. */
kernel void csr_fill_cols(global const int* row_ptr, global const int* col_idx,
                          global const float* values, const int K, const int og,
                          global int* cursor, global int* t_col_idx, global float* t_values,
                          global int* perm)
{
    const int g = get_group_id(0), lid = get_local_id(0), nl = get_local_size(0);
    global int* cur = cursor + (size_t)g * K;
    for (int ol = 0; ol < og; ++ol) {
        const int o = g * og + ol;
        const int end = row_ptr[o + 1];
        for (int e = row_ptr[o] + lid; e < end; e += nl) {
            const int pos = cur[col_idx[e]];
            cur[col_idx[e]] = pos + 1;
            t_col_idx[pos] = ol;
            t_values[pos] = values[e];
            perm[pos] = e;
        }
        barrier(CLK_GLOBAL_MEM_FENCE);
    }
}

/* ------------------------------------------------------------------ panels */

/* (G, M, K) -> blocked panel: for each block of B rows m (B % 8 == 0), the transposed (K, B)
 * tile is contiguous: p[((g * nblk + m / B) * K + k) * B + m % B] = x[g, m, k], with rows
 * m >= M (up to nblk * B) zero. One work-item per 8 (m) x 8 (k) tile, kb fastest: scalar
 * reads of eight rows, aligned float8 stores (plain scalar reads beat vload8 on PoCL). */
kernel void csr_to_panel(global const float* x, const int M, const int K, const int B,
                         const int nkb, const int nmb, const int ntiles, global float* p)
{
    const int gid = get_global_id(0);
    if (gid >= ntiles) return;
    const int kb = gid % nkb, mb = (gid / nkb) % nmb, g = gid / (nkb * nmb);
    const int k0 = kb * 8, m0 = mb * 8, nblk = nmb * 8 / B, B8 = B / 8;
    global const float* src = x + (size_t)g * M * K;
    global float8* dst =
        (global float8*)(p + ((size_t)(g * nblk + m0 / B) * K + k0) * B + m0 % B);
    if (m0 + 8 <= M && k0 + 8 <= K) {
        global const float* r0 = src + (size_t)m0 * K + k0;
        global const float* r1 = r0 + K;
        global const float* r2 = r1 + K;
        global const float* r3 = r2 + K;
        global const float* r4 = r3 + K;
        global const float* r5 = r4 + K;
        global const float* r6 = r5 + K;
        global const float* r7 = r6 + K;
        for (int j = 0; j < 8; ++j)
            dst[j * B8] = (float8)(r0[j], r1[j], r2[j], r3[j], r4[j], r5[j], r6[j], r7[j]);
    } else {
        for (int j = 0; j < 8 && k0 + j < K; ++j) {
            float t[8];
            for (int i = 0; i < 8; ++i)
                t[i] = m0 + i < M ? src[(size_t)(m0 + i) * K + k0 + j] : 0.0f;
            dst[j * B8] = vload8(0, t);
        }
    }
}

/* ------------------------------------------------------------------ products x W^T, dy W */

/* y[g, m, o] = sum_e values[e] * x[g, m, col_idx[e]] over the nonzeros of row g*og + o, read
 * from the blocked panel (block MBLK) of x: the forward x @ W^T (and the backward dy @ W with
 * the transposed CSR). Work-item = (oc, mb, g), oc fastest: rows m0 = mb*16.. and outputs
 * oc*ochunk.. of group g; its (K, 16) tile is contiguous, so each nonzero is one 64-byte line:
 * two aligned float8 loads and multiply-adds. Two nonzeros per step keep four accumulators. */
kernel void csr_spmm_panel(global const float* p, global const int* row_ptr,
                           global const int* col_idx, VALUE_ARGS,
                           const int M, const int K, const int og, const int ochunk,
                           const int noc, const int nmb, const int nitems, global float* y)
{
    const int gid = get_global_id(0);
    if (gid >= nitems) return;
    const int oc = gid % noc, mb = (gid / noc) % nmb, g = gid / (noc * nmb);
    const int m0 = mb * MBLK;
    const int o_begin = oc * ochunk, o_end = min(og, o_begin + ochunk);
    /* aligned casts: PoCL compiles vload8 to much slower code than a float8 dereference */
    global const float8* pt = (global const float8*)(p + (size_t)(g * nmb + mb) * K * MBLK);
    global const int* rp = row_ptr + (size_t)g * og;
    global float* yg = y + ((size_t)g * M + m0) * og;
    const int mrows = min(MBLK, M - m0);
    for (int o = o_begin; o < o_end; ++o) {
        float8 a0 = (float8)(0.0f), a1 = (float8)(0.0f), b0 = (float8)(0.0f), b1 = (float8)(0.0f);
        const int e_end = rp[o + 1];
        int e = rp[o];
        for (; e + 1 < e_end; e += 2) {
            const int c0 = 2 * col_idx[e], c1 = 2 * col_idx[e + 1];
            const float v0 = VALUE(e), v1 = VALUE(e + 1);
            a0 = v0 * pt[c0] + a0;
            a1 = v0 * pt[c0 + 1] + a1;
            b0 = v1 * pt[c1] + b0;
            b1 = v1 * pt[c1 + 1] + b1;
        }
        if (e < e_end) {
            const int c0 = 2 * col_idx[e];
            a0 = VALUE(e) * pt[c0] + a0;
            a1 = VALUE(e) * pt[c0 + 1] + a1;
        }
        a0 += b0;
        a1 += b1;
        global float* yo = yg + o;
        if (mrows == MBLK) {
            yo[0] = a0.s0;       yo[og] = a0.s1;      yo[2 * og] = a0.s2;  yo[3 * og] = a0.s3;
            yo[4 * og] = a0.s4;  yo[5 * og] = a0.s5;  yo[6 * og] = a0.s6;  yo[7 * og] = a0.s7;
            yo[8 * og] = a1.s0;  yo[9 * og] = a1.s1;  yo[10 * og] = a1.s2; yo[11 * og] = a1.s3;
            yo[12 * og] = a1.s4; yo[13 * og] = a1.s5; yo[14 * og] = a1.s6; yo[15 * og] = a1.s7;
        } else {
            float r[MBLK];
            vstore8(a0, 0, r);
            vstore8(a1, 1, r);
            for (int i = 0; i < mrows; ++i) yo[(size_t)i * og] = r[i];
        }
    }
}

/* The same product read straight from x (G, M, K), for patterns too sparse to pay for a panel:
 * 8 rows m per work-item, each nonzero gathers x[m0..m0+7, c] into a float8. Rows past M
 * repeat row M-1 (in bounds, never stored). Work-item = (oc, mb, g), oc fastest. */
kernel void csr_spmm_gather(global const float* x, global const int* row_ptr,
                            global const int* col_idx, VALUE_ARGS,
                            const int M, const int K, const int og, const int ochunk,
                            const int noc, const int nmb, const int nitems, global float* y)
{
    const int gid = get_global_id(0);
    if (gid >= nitems) return;
    const int oc = gid % noc, mb = (gid / noc) % nmb, g = gid / (noc * nmb);
    const int m0 = mb * 8;
    const int o_begin = oc * ochunk, o_end = min(og, o_begin + ochunk);
    global const float* xg = x + (size_t)g * M * K;
    global const float* x0 = xg + (size_t)min(m0 + 0, M - 1) * K;
    global const float* x1 = xg + (size_t)min(m0 + 1, M - 1) * K;
    global const float* x2 = xg + (size_t)min(m0 + 2, M - 1) * K;
    global const float* x3 = xg + (size_t)min(m0 + 3, M - 1) * K;
    global const float* x4 = xg + (size_t)min(m0 + 4, M - 1) * K;
    global const float* x5 = xg + (size_t)min(m0 + 5, M - 1) * K;
    global const float* x6 = xg + (size_t)min(m0 + 6, M - 1) * K;
    global const float* x7 = xg + (size_t)min(m0 + 7, M - 1) * K;
    global const int* rp = row_ptr + (size_t)g * og;
    global float* yg = y + ((size_t)g * M + m0) * og;
    const int mrows = min(8, M - m0);
    for (int o = o_begin; o < o_end; ++o) {
        float8 acc = (float8)(0.0f);
        const int e_end = rp[o + 1];
        for (int e = rp[o]; e < e_end; ++e) {
            const int c = col_idx[e];
            acc = VALUE(e) * (float8)(x0[c], x1[c], x2[c], x3[c], x4[c], x5[c], x6[c], x7[c])
                  + acc;
        }
        global float* yo = yg + o;
        if (mrows == 8) {
            yo[0] = acc.s0;      yo[og] = acc.s1;     yo[2 * og] = acc.s2; yo[3 * og] = acc.s3;
            yo[4 * og] = acc.s4; yo[5 * og] = acc.s5; yo[6 * og] = acc.s6; yo[7 * og] = acc.s7;
        } else {
            float r[8];
            vstore8(acc, 0, r);
            for (int i = 0; i < mrows; ++i) yo[(size_t)i * og] = r[i];
        }
    }
}

/* One work-item per output y[g, m, o], a scalar dot over the nonzeros of row o: the textbook
 * kernel. Used for tiny M (batch 1), where it has the least overhead; also the baseline of
 * benchmarks/bench_csr_crossover.py. Work-item = (o, m, g). */
kernel void csr_spmm_scalar(global const float* x, global const int* row_ptr,
                            global const int* col_idx, VALUE_ARGS,
                            const int G, const int M, const int K, const int og,
                            global float* y)
{
    const int o = get_global_id(0), m = get_global_id(1), g = get_global_id(2);
    if (o >= og || m >= M || g >= G) return;
    global const float* xr = x + ((size_t)g * M + m) * K;
    const int end = row_ptr[g * og + o + 1];
    float s = 0.0f;
    for (int e = row_ptr[g * og + o]; e < end; ++e) s += VALUE(e) * xr[col_idx[e]];
    y[((size_t)g * M + m) * og + o] = s;
}

/* ------------------------------------------------------------------ weight gradient (SDDMM) */

/* Weight gradient on the pattern, partial over the rows m of block ch (B rows):
 * s = sum_m dp[o, m] * xp[col_idx[e], m] for each nonzero e of row o, with dp, xp the blocked
 * panels (block B) of dy and x: both B-long rows are contiguous. Work-item = (o, ch), o fastest
 * so that neighbours share the x block in cache. With nch == 1 the result goes straight to out
 * (added when accumulate), else to partial[ch * nnz + e] for csr_sddmm_reduce. Two nonzeros
 * at a time share the loads of dp. */
kernel void csr_sddmm_panel(global const float* dp, global const float* xp,
                            global const int* row_ptr, global const int* col_idx,
                            const int O, const int K, const int og, const int B, const int nch,
                            const int nnz, const int accumulate, global float* partial,
                            global float* out)
{
    const int gid = get_global_id(0);
    if (gid >= O * nch) return;
    const int o = gid % O, ch = gid / O;
    const int g = o / og, blk = g * nch + ch;
    global const float8* a = (global const float8*)(dp + ((size_t)blk * og + (o - g * og)) * B);
    global const float8* xb = (global const float8*)(xp + (size_t)blk * K * B);
    const int B8 = B / 8;
    const int e_end = row_ptr[o + 1];
    for (int e = row_ptr[o]; e < e_end; e += 2) {
        const int two = e + 1 < e_end;
        global const float8* b0 = xb + (size_t)col_idx[e] * B8;
        global const float8* b1 = xb + (size_t)col_idx[two ? e + 1 : e] * B8;
        float8 p0 = (float8)(0.0f), p1 = (float8)(0.0f), q0 = (float8)(0.0f), q1 = (float8)(0.0f);
        for (int m = 0; m < B8; m += 2) {
            const float8 u0 = a[m], u1 = a[m + 1];
            p0 = u0 * b0[m] + p0;
            p1 = u1 * b0[m + 1] + p1;
            q0 = u0 * b1[m] + q0;
            q1 = u1 * b1[m + 1] + q1;
        }
        const float8 h0 = p0 + p1, h1 = q0 + q1;
        const float4 f0 = h0.lo + h0.hi, f1 = h1.lo + h1.hi;
        const float s0 = (f0.x + f0.y) + (f0.z + f0.w), s1 = (f1.x + f1.y) + (f1.z + f1.w);
        if (nch == 1) {
            out[e] = accumulate ? out[e] + s0 : s0;
            if (two) out[e + 1] = accumulate ? out[e + 1] + s1 : s1;
        } else {
            partial[(size_t)ch * nnz + e] = s0;
            if (two) partial[(size_t)ch * nnz + e + 1] = s1;
        }
    }
}

/* The same weight gradient read straight from dy (G, M, og) and x (G, M, K), for patterns too
 * sparse to pay for two panels: eight nonzeros of row o at a time, each row m gathers their
 * eight x[m, c] into a float8 and multiplies by the scalar dy[m, o]. Work-item = (o, ch) over
 * rows m of chunk ch; results go to out or partial as in csr_sddmm_panel. */
kernel void csr_sddmm_gather(global const float* dy, global const float* x,
                             global const int* row_ptr, global const int* col_idx,
                             const int O, const int M, const int K, const int og,
                             const int chunk, const int nch, const int nnz, const int accumulate,
                             global float* partial, global float* out)
{
    const int gid = get_global_id(0);
    if (gid >= O * nch) return;
    const int o = gid % O, ch = gid / O;
    const int g = o / og;
    const int m_begin = ch * chunk, m_end = min(M, m_begin + chunk);
    global const float* dyo = dy + ((size_t)g * M + m_begin) * og + (o - g * og);
    global const float* xg = x + ((size_t)g * M + m_begin) * K;
    const int e_end = row_ptr[o + 1];
    for (int e0 = row_ptr[o]; e0 < e_end; e0 += 8) {
        const int last = e_end - 1;
        const int c0 = col_idx[e0], c1 = col_idx[min(e0 + 1, last)];
        const int c2 = col_idx[min(e0 + 2, last)], c3 = col_idx[min(e0 + 3, last)];
        const int c4 = col_idx[min(e0 + 4, last)], c5 = col_idx[min(e0 + 5, last)];
        const int c6 = col_idx[min(e0 + 6, last)], c7 = col_idx[min(e0 + 7, last)];
        float8 acc0 = (float8)(0.0f), acc1 = (float8)(0.0f);
        global const float* d = dyo;
        global const float* xr = xg;
        int m = m_begin;
        for (; m + 1 < m_end; m += 2, d += 2 * og, xr += 2 * K) {
            global const float* xs = xr + K;
            acc0 = d[0] * (float8)(xr[c0], xr[c1], xr[c2], xr[c3], xr[c4], xr[c5], xr[c6], xr[c7])
                   + acc0;
            acc1 = d[og] * (float8)(xs[c0], xs[c1], xs[c2], xs[c3], xs[c4], xs[c5], xs[c6], xs[c7])
                   + acc1;
        }
        if (m < m_end)
            acc0 = d[0] * (float8)(xr[c0], xr[c1], xr[c2], xr[c3], xr[c4], xr[c5], xr[c6], xr[c7])
                   + acc0;
        float r[8];
        vstore8(acc0 + acc1, 0, r);
        const int n = min(8, e_end - e0);
        if (nch == 1) {
            for (int j = 0; j < n; ++j) out[e0 + j] = accumulate ? out[e0 + j] + r[j] : r[j];
        } else {
            for (int j = 0; j < n; ++j) partial[(size_t)ch * nnz + e0 + j] = r[j];
        }
    }
}

/* out[e] (+)= sum over chunks of partial[ch * nnz + e], chunks in order (deterministic). */
kernel void csr_sddmm_reduce(global const float* partial, const int nch, const int nnz,
                             const int accumulate, global float* out)
{
    const int e = get_global_id(0);
    if (e >= nnz) return;
    float s = 0.0f;
    for (int ch = 0; ch < nch; ++ch) s += partial[(size_t)ch * nnz + e];
    out[e] = accumulate ? out[e] + s : s;
}
