/* Direct sparse convolution for inference: a CSR filter bank applied straight to the NCHW
 * input, written straight to the NCHW output with the bias added. No im2row buffer and no
 * transpose of the result, so only the nonzero taps cost anything.
 *
 * The filter bank W (O, CG*KH*KW) is in CSR (minidnn/sparse.py); each nonzero's column is first
 * decoded once into a "tap" (csr_conv_taps): cl << 16 | ky << 8 | kx, with cl the channel within
 * the group. Plain OpenCL C 1.2; a*b + c written out (see common.h). */
#include "nn.h"

#define OUT_BLOCK 8 /* consecutive output pixels of one row per work-item */

/* taps[e] = packed (cl, ky, kx) of column col_idx[e] = (cl*KH + ky)*KW + kx. */
kernel void csr_conv_taps(global const int* col_idx, const int nnz, const int KH, const int KW,
                          global int* taps)
{
    const int e = get_global_id(0);
    if (e >= nnz) return;
    const int col = col_idx[e], khw = KH * KW;
    const int cl = col / khw, r = col - cl * khw, ky = r / KW, kx = r - ky * KW;
    taps[e] = (cl << 16) | (ky << 8) | kx;
}

/* offs[e] = cl*H*W + ky*W + kx: where tap e reads, relative to a tile's first input pixel, in
 * an input of H x W planes. Computed per call (the planes' size is the call's, padded or not),
 * so the inner loop of csr_conv2d adds one offset per nonzero instead of decoding the tap
 * (issue 20: 1.15x on both CPU runtimes at ResNet-32's shapes). */
kernel void csr_conv_offsets(global const int* taps, const int nnz, const int HW, const int W,
                             global int* offs)
{
    const int e = get_global_id(0);
    if (e >= nnz) return;
    const int t = taps[e];
    offs[e] = (t >> 16) * HW + ((t >> 8) & 255) * W + (t & 255);
}

/* y (N, O, OH, OW) = conv(x (N, C, H, W), W) + bias. Global size (ceil(OH/8) * ceil(OW/8), O, N):
 * a work-item computes a tile of OUT_ROWS x OUT_BLOCK outputs of channel o of image n, so every
 * work-item of a work-group walks the same nonzeros (uniform loop, weights read from cache) and
 * each nonzero feeds OUT_ROWS float8 multiply-adds: 8 independent accumulators keep both FMA
 * pipes of a CPU core busy (4 rows left half of their latency idle: 8 measured 1.05-1.2x faster
 * on both CPU runtimes, issue 20). Tiles whose windows lie inside the image skip the bounds
 * checks and read at offs[e] (csr_conv_offsets); the others take a scalar, checked path.
 * The epilogue (inference plans, minidnn/inference.py) is fused in this order: + res (an NCHW
 * tensor shaped like the convolution's output, the shortcut of a residual block) when has_res,
 * max(., 0) when relu, then 2x2 max pooling with stride 2 when pool == 2: y is then
 * (N, O, OH/2, OW/2). A tile's 8 x 8 outputs are whole pooling windows, so pooling needs no
 * other work-item's outputs. */
#define OUT_ROWS 8
KERNEL void csr_conv2d(global const float* x, global const int* row_ptr,
                       global const int* taps, global const int* offs, VALUE_ARGS,
                       global const float* bias, const int has_bias, global float* y,
                       const int C, const int H, const int W, const int O, const int OH,
                       const int OW, const int KH, const int KW, const int stride,
                       const int pad, const int G, const int N, global const float* res,
                       const int has_res, const int relu, const int pool)
{
    const int nbw = (OW + OUT_BLOCK - 1) / OUT_BLOCK, nbh = (OH + OUT_ROWS - 1) / OUT_ROWS;
    const int blk = get_global_id(0), o = get_global_id(1), n = get_global_id(2);
    if (blk >= nbh * nbw || o >= O || n >= N) return;
    const int by = blk / nbw, oy0 = by * OUT_ROWS, ox0 = (blk - by * nbw) * OUT_BLOCK;
    const int og = O / G, cg = C / G, g = o / og, HW = H * W;
    const int iy0 = oy0 * stride - pad, ix0 = ox0 * stride - pad;
    const int nout = imin(OUT_BLOCK, OW - ox0), nrows = imin(OUT_ROWS, OH - oy0);
    const long xbase = ((long)n * C + (long)g * cg) * HW;
    const float b0 = has_bias ? bias[o] : 0.0f;
    float8 acc[OUT_ROWS];
    UNROLL for (int r = 0; r < OUT_ROWS; ++r) acc[r] = (float8)(b0);
    const int e_begin = row_ptr[o], e_end = row_ptr[o + 1];
    const bool inside = iy0 >= 0 && iy0 + (OUT_ROWS - 1) * stride + KH <= H && ix0 >= 0
                        && ix0 + (OUT_BLOCK - 1) * stride + KW <= W;
    if (inside && stride == 1) {
        global const float* x0 = x + xbase + (long)iy0 * W + ix0;
        for (int e = e_begin; e < e_end; ++e) {
            const float v = VALUE(e);
            global const float* p = x0 + offs[e];
            UNROLL for (int r = 0; r < OUT_ROWS; ++r) acc[r] += v * LD8(p + r * W);
        }
    } else if (inside) {
        global const float* x0 = x + xbase + (long)iy0 * W + ix0;
        const int s = stride, rs = stride * W;
        for (int e = e_begin; e < e_end; ++e) {
            const float v = VALUE(e);
            global const float* p = x0 + offs[e];
            UNROLL for (int r = 0; r < OUT_ROWS; ++r) {
                global const float* q = p + r * rs;
                acc[r] += v * (float8)(q[0], q[s], q[2 * s], q[3 * s], q[4 * s], q[5 * s],
                                       q[6 * s], q[7 * s]);
            }
        }
    } else {
        for (int e = e_begin; e < e_end; ++e) {
            const int t = taps[e], ky = (t >> 8) & 255, kx = t & 255;
            const float v = VALUE(e);
            const long xc = xbase + (long)(t >> 16) * HW;
            float a[OUT_ROWS][OUT_BLOCK];
            UNROLL for (int r = 0; r < OUT_ROWS; ++r) {
                const int iy = iy0 + r * stride + ky;
                const bool row_in = r < nrows && iy >= 0 && iy < H;
                UNROLL for (int j = 0; j < OUT_BLOCK; ++j) {
                    const int ix = ix0 + j * stride + kx;
                    a[r][j] = (row_in && j < nout && ix >= 0 && ix < W)
                              ? v * x[xc + (long)iy * W + ix] : 0.0f;
                }
                acc[r] += (float8)(a[r][0], a[r][1], a[r][2], a[r][3], a[r][4], a[r][5],
                                   a[r][6], a[r][7]);
            }
        }
    }
    if (has_res) {
        for (int r = 0; r < nrows; ++r) {
            global const float* rp = res + (((long)n * O + o) * OH + oy0 + r) * OW + ox0;
            if (nout == OUT_BLOCK) {
                acc[r] += LD8(rp);
            } else {
                float a[OUT_BLOCK];
                vstore8(acc[r], 0, a);
                for (int j = 0; j < nout; ++j) a[j] += rp[j];
                acc[r] = vload8(0, a);
            }
        }
    }
    if (relu) {
        UNROLL for (int r = 0; r < OUT_ROWS; ++r) acc[r] = acc[r] > 0.0f ? acc[r] : (float8)(0.0f);
    }
    if (pool == 2) {
        /* pooled rows oy0/2 + {0, 1}, columns ox0/2 + {0..3}: only windows inside OH x OW */
        const int PH = OH / 2, PW = OW / 2, py0 = oy0 / 2, px0 = ox0 / 2;
        const int np = imin(OUT_BLOCK / 2, PW - px0);
        UNROLL for (int rr = 0; rr < OUT_ROWS / 2; ++rr) {
            if (py0 + rr >= PH || np <= 0) break;
            const float8 m = acc[2 * rr] > acc[2 * rr + 1] ? acc[2 * rr] : acc[2 * rr + 1];
            const float4 p = (float4)(m.s0 > m.s1 ? m.s0 : m.s1, m.s2 > m.s3 ? m.s2 : m.s3,
                                      m.s4 > m.s5 ? m.s4 : m.s5, m.s6 > m.s7 ? m.s6 : m.s7);
            global float* out = y + (((long)n * O + o) * PH + py0 + rr) * PW + px0;
            if (np == OUT_BLOCK / 2) {
                ST4(p, out);
            } else {
                float a[OUT_BLOCK / 2];
                vstore4(p, 0, a);
                for (int j = 0; j < np; ++j) out[j] = a[j];
            }
        }
        return;
    }
    for (int r = 0; r < nrows; ++r) {
        global float* out = y + (((long)n * O + o) * OH + oy0 + r) * OW + ox0;
        if (nout == OUT_BLOCK) {
            ST8(acc[r], out);
        } else {
            float a[OUT_BLOCK];
            vstore8(acc[r], 0, a);
            for (int j = 0; j < nout; ++j) out[j] = a[j];
        }
    }
}

/* The pattern of the flipped, transposed filter bank that the input gradient of a stride-1
 * convolution convolves dY with (training, issue 20): W' (C, O/G*KH*KW),
 * W'[g*cg + cl, (ol*KH + KH-1-ky)*KW + KW-1-kx] = W[g*og + ol, (cl*KH + ky)*KW + kx].
 * From the per-group transpose of W (csr_transpose: rows (g, cl, ky, kx), entries ol), whose
 * values are then W' values in the same order: the rows of channel c are the KH*KW consecutive
 * transposed rows c*KH*KW.., so row_ptr[c] = t_row_ptr[c*KH*KW], and each entry's column is
 * rebuilt from its transposed row. Within a row, columns are in the transpose's order (not
 * sorted; csr_conv2d does not need them sorted). One work-item per transposed row r (rows =
 * G*cg*KH*KW; work-item `rows` writes the final row_ptr). */
kernel void csr_flip_transpose(global const int* t_row_ptr, global const int* t_col_idx,
                               const int rows, const int KH, const int KW,
                               global int* row_ptr, global int* col_idx)
{
    const int r = get_global_id(0);
    if (r > rows) return;
    const int khw = KH * KW, q = r % khw;
    if (q == 0) row_ptr[r / khw] = t_row_ptr[r];
    if (r == rows) return;
    const int ky = q / KW, kx = q - ky * KW;
    const int flip = (KH - 1 - ky) * KW + (KW - 1 - kx);
    const int end = t_row_ptr[r + 1];
    for (int e = t_row_ptr[r]; e < end; ++e) col_idx[e] = t_col_idx[e] * khw + flip;
}

/* out (P, Hp, Wp) = x (P, H, W) placed at row `top`, column `left`, zeros around: the padded
 * copy that lets csr_conv2d take its unchecked path on every tile when most tiles would
 * otherwise straddle the border (the input gradient's "full" convolution, issue 20). One
 * work-item per output row. */
KERNEL void csr_pad_planes(global const float* x, const int P, const int H, const int W,
                           const int Hp, const int Wp, const int top, const int left,
                           global float* out)
{
    const int row = get_global_id(0);
    if (row >= P * Hp) return;
    const int p = row / Hp, y = row - p * Hp - top;
    global float* o = out + (size_t)row * Wp;
    if (y < 0 || y >= H) {
        for (int j = 0; j < Wp; ++j) o[j] = 0.0f;
        return;
    }
    global const float* s = x + ((size_t)p * H + y) * W;
    for (int j = 0; j < Wp; ++j) {
        const int xs = j - left;
        o[j] = xs >= 0 && xs < W ? s[xs] : 0.0f;
    }
}

/* The weight gradient of csr_conv2d on the pattern, straight from NCHW x and dY (training,
 * issue 20: no im2row rows, no transpose of dY, no panels):
 *   partial[ch * nnz + e] = sum over images n of chunk ch, output pixels (oy, ox) of
 *                           dY[n, o, oy, ox] * x[n, g*cg + cl, oy*stride + ky - pad, ox*stride + kx - pad]
 * for every nonzero e = (o, tap (cl, ky, kx)) of row o; csr_sddmm_reduce (csr.cl) then adds
 * the chunks in order (deterministic, no atomics), or with nch == 1 the sum goes to out
 * (added when accumulate). Work-item = (o, ch), o fastest: a work-item walks the nonzeros of
 * row o, each over its images' output rows in float8 runs of 8 pixels (windows inside x:
 * vector reads; at the border or the row's tail: checked scalar reads). */
KERNEL void csr_conv_wgrad(global const float* dy, global const float* x,
                           global const int* row_ptr, global const int* taps,
                           const int N, const int C, const int H, const int W, const int O,
                           const int OH, const int OW, const int stride, const int pad,
                           const int G, const int chunk, const int nch, const int nnz,
                           const int accumulate, global float* partial, global float* out)
{
    const int gid = get_global_id(0);
    if (gid >= O * nch) return;
    const int o = gid % O, ch = gid / O;
    const int og = O / G, cg = C / G, g = o / og, HW = H * W, OHW = OH * OW;
    const int n_begin = ch * chunk, n_end = imin(N, n_begin + chunk);
    const int e_end = row_ptr[o + 1];
    for (int e = row_ptr[o]; e < e_end; ++e) {
        const int t = taps[e], ky = (t >> 8) & 255, kx = t & 255;
        const int c = g * cg + (t >> 16);
        float8 acc = (float8)(0.0f);
        float tail = 0.0f;
        for (int n = n_begin; n < n_end; ++n) {
            global const float* d = dy + ((size_t)n * O + o) * OHW;
            global const float* xc = x + ((size_t)n * C + c) * HW;
            for (int oy = 0; oy < OH; ++oy) {
                const int iy = oy * stride + ky - pad;
                if (iy < 0 || iy >= H) continue;
                global const float* drow = d + oy * OW;
                global const float* xrow = xc + (size_t)iy * W;
                for (int ox = 0; ox < OW; ox += 8) {
                    const int ix0 = ox * stride + kx - pad;
                    if (ox + 8 <= OW && ix0 >= 0 && ix0 + 7 * stride < W) {
                        global const float* q = xrow + ix0;
                        const float8 xv = stride == 1 ? LD8(q)
                            : (float8)(q[0], q[stride], q[2 * stride], q[3 * stride],
                                       q[4 * stride], q[5 * stride], q[6 * stride],
                                       q[7 * stride]);
                        acc = LD8(drow + ox) * xv + acc;
                    } else {
                        const int end = imin(OW, ox + 8);
                        for (int j = ox; j < end; ++j) {
                            const int ix = j * stride + kx - pad;
                            if (ix >= 0 && ix < W) tail = drow[j] * xrow[ix] + tail;
                        }
                    }
                }
            }
        }
        const float4 f = acc.lo + acc.hi;
        const float s = (f.x + f.y) + (f.z + f.w) + tail;
        if (nch == 1) out[e] = accumulate ? out[e] + s : s;
        else partial[(size_t)ch * nnz + e] = s;
    }
}

/* csr_conv_wgrad for stride 1 without padding (the host pads x first when the convolution
 * pads), eight nonzeros of row o at a time: each float8 of dY (8 output pixels of one row) is
 * loaded once and multiplied with the eight windows of x, one per nonzero (eight float8
 * accumulators), so dY is read once per 8 nonzeros and the loop runs once per 8. Rows whose
 * width is not a multiple of 8 finish with a scalar tail (one float8 over the 8 nonzeros).
 * Nonzeros past the row's end repeat its last one (computed, never stored). */
#define WG_OFF(t) ((g * cg + ((t) >> 16)) * HW + (((t) >> 8) & 255) * W + ((t) & 255))
KERNEL void csr_conv_wgrad8(global const float* dy, global const float* x,
                            global const int* row_ptr, global const int* taps,
                            const int N, const int C, const int H, const int W, const int O,
                            const int OH, const int OW, const int G, const int chunk,
                            const int nch, const int nnz, const int accumulate,
                            global float* partial, global float* out)
{
    const int gid = get_global_id(0);
    if (gid >= O * nch) return;
    const int o = gid % O, ch = gid / O;
    const int og = O / G, cg = C / G, g = o / og, HW = H * W, OHW = OH * OW;
    const int n_begin = ch * chunk, n_end = imin(N, n_begin + chunk);
    const int OW8 = OW & ~7;
    const int e_end = row_ptr[o + 1], last = e_end - 1;
    for (int e0 = row_ptr[o]; e0 < e_end; e0 += 8) {
        const int f0 = WG_OFF(taps[e0]), f1 = WG_OFF(taps[imin(e0 + 1, last)]);
        const int f2 = WG_OFF(taps[imin(e0 + 2, last)]), f3 = WG_OFF(taps[imin(e0 + 3, last)]);
        const int f4 = WG_OFF(taps[imin(e0 + 4, last)]), f5 = WG_OFF(taps[imin(e0 + 5, last)]);
        const int f6 = WG_OFF(taps[imin(e0 + 6, last)]), f7 = WG_OFF(taps[imin(e0 + 7, last)]);
        float8 a0 = (float8)(0.0f), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0,
               a7 = a0, tl = a0;
        for (int n = n_begin; n < n_end; ++n) {
            global const float* d = dy + ((size_t)n * O + o) * OHW;
            global const float* xn = x + (size_t)n * C * HW;
            for (int oy = 0; oy < OH; ++oy) {
                global const float* dr = d + oy * OW;
                global const float* xr = xn + oy * W;
                for (int ox = 0; ox < OW8; ox += 8) {
                    const float8 dv = LD8(dr + ox);
                    global const float* q = xr + ox;
                    a0 = dv * LD8(q + f0) + a0;
                    a1 = dv * LD8(q + f1) + a1;
                    a2 = dv * LD8(q + f2) + a2;
                    a3 = dv * LD8(q + f3) + a3;
                    a4 = dv * LD8(q + f4) + a4;
                    a5 = dv * LD8(q + f5) + a5;
                    a6 = dv * LD8(q + f6) + a6;
                    a7 = dv * LD8(q + f7) + a7;
                }
                for (int j = OW8; j < OW; ++j) {
                    global const float* q = xr + j;
                    tl = dr[j] * (float8)(q[f0], q[f1], q[f2], q[f3], q[f4], q[f5], q[f6],
                                          q[f7]) + tl;
                }
            }
        }
        float s[8];
        const float8 hs = (float8)(a0.s0 + a0.s1, a1.s0 + a1.s1, a2.s0 + a2.s1, a3.s0 + a3.s1,
                                   a4.s0 + a4.s1, a5.s0 + a5.s1, a6.s0 + a6.s1, a7.s0 + a7.s1)
                        + (float8)(a0.s2 + a0.s3, a1.s2 + a1.s3, a2.s2 + a2.s3, a3.s2 + a3.s3,
                                   a4.s2 + a4.s3, a5.s2 + a5.s3, a6.s2 + a6.s3, a7.s2 + a7.s3)
                        + ((float8)(a0.s4 + a0.s5, a1.s4 + a1.s5, a2.s4 + a2.s5, a3.s4 + a3.s5,
                                    a4.s4 + a4.s5, a5.s4 + a5.s5, a6.s4 + a6.s5, a7.s4 + a7.s5)
                        + (float8)(a0.s6 + a0.s7, a1.s6 + a1.s7, a2.s6 + a2.s7, a3.s6 + a3.s7,
                                   a4.s6 + a4.s7, a5.s6 + a5.s7, a6.s6 + a6.s7, a7.s6 + a7.s7))
                        + tl;
        vstore8(hs, 0, s);
        const int m = imin(8, e_end - e0);
        if (nch == 1) {
            for (int j = 0; j < m; ++j) out[e0 + j] = accumulate ? out[e0 + j] + s[j] : s[j];
        } else {
            for (int j = 0; j < m; ++j) partial[(size_t)ch * nnz + e0 + j] = s[j];
        }
    }
}
