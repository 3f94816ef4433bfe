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

/* y (N, O, OH, OW) = conv(x (N, C, H, W), W) + bias. Global size (ceil(OH/4) * ceil(OW/8), O, N):
 * a work-item computes a tile of OUT_ROWS x OUT_BLOCK outputs of channel o of image n, so every
 * work-item of a work-group walks the same nonzeros (uniform loop, weights read from cache) and
 * each nonzero feeds OUT_ROWS float8 multiply-adds. Tiles whose windows lie inside the image skip
 * the bounds checks; the others take a scalar, checked path.
 * The epilogue (inference plans, minidnn/inference.py) is fused in this order: + res (an NCHW
 * tensor shaped like the convolution's output, the shortcut of a residual block) when has_res,
 * max(., 0) when relu, then 2x2 max pooling with stride 2 when pool == 2: y is then
 * (N, O, OH/2, OW/2). A tile's 4 x 8 outputs are whole pooling windows, so pooling needs no
 * other work-item's outputs. */
#define OUT_ROWS 4
kernel void csr_conv2d(global const float* x, global const int* row_ptr,
                       global const int* taps, VALUE_ARGS,
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
            const int t = taps[e];
            const float v = VALUE(e);
            global const float* p = x0 + (long)(t >> 16) * HW + ((t >> 8) & 255) * W
                                    + (t & 255);
            UNROLL for (int r = 0; r < OUT_ROWS; ++r) acc[r] += v * LD8(p + r * W);
        }
    } else if (inside) {
        global const float* x0 = x + xbase + (long)iy0 * W + ix0;
        const int s = stride, rs = stride * W;
        for (int e = e_begin; e < e_end; ++e) {
            const int t = taps[e];
            const float v = VALUE(e);
            global const float* p = x0 + (long)(t >> 16) * HW + ((t >> 8) & 255) * W
                                    + (t & 255);
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
