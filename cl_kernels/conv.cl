/* Dense direct convolution with stride 1 (cl_conv.py): no im2row buffer, no transposes.
 * x (N, C, H, W) -> y (N, O, OH, OW), OH = H + 2*pad - KH + 1, groups G; the same kernels give
 * the input gradient of such a layer (a stride-1 convolution of dy with the filters flipped and
 * their channel axes swapped, padding KH - 1 - pad), packed that way by conv2d_pack_w.
 *
 * Design (CPU first, plain OpenCL 1.2 without barriers, so GPUs run it too): a work-item owns
 * 16 output channels x 8 neighbouring pixels of one output row in 16 float8 registers. Per
 * input channel and filter row it loads the 8 + KW - 1 input values once (two float8, zeros
 * outside the image), and per filter column it forms the shifted float8 of inputs with
 * swizzles and does 16 vector a*b + c with the 16 weights of that tap (one aligned 16-float
 * piece of the packed filters: no strided or ragged weight reads). The input row is read from
 * cache KH times by the work-items of neighbouring output rows. Output: contiguous float8
 * stores into NCHW, bias added; nothing else is written. The two-row kernels (conv_rows.h)
 * give a work-item 8 output channels x 8 pixels of two rows instead, each weight feeding two
 * FMAs; cl_conv.py picks the tile per runtime (TILE_BY_PLATFORM).
 */
#include "nn.h"

#define CONV_OB 16  /* output channels per work-item */

/* w (the filters of a layer, (O, CIG, KH*KW) with CIG = C/G) -> wp[g][ob][c][t][0..OB-1], the
 * weight of direct output channel g*COG + ob*OB + r, direct input channel g*CIG + c (in-group
 * index c) and tap t, zero past COG; OB: the output channels of a work-item (CONV_OB = 16 for
 * conv2d_k<KW>, CONV_RB = 8 for conv2d_r2_k<KW>). transposed == 0: the layer's own
 * convolution (COG = O/G).
 * transposed == 1: its input gradient, whose output channels are the layer's input channels
 * (COG = the layer's C/G) and input channels the layer's output channels (CIG = O/G), taps
 * flipped. One work-item per (c, g, ob): the T * OB floats wp[g][ob][c][..] (one per packed
 * float, with 64-bit index divisions, made this pass cost 3% of a VGG16 step). */
KERNEL void conv2d_pack_w(__global const float* w, const int G, const int COG, const int CIG,
                          const int T, const int transposed, const int OB,
                          __global float* wp) {
    const int c = get_global_id(0), gob = get_global_id(1);
    const int nob = (COG + OB - 1) / OB;
    if (c >= CIG || gob >= G * nob) return;
    const int g = gob / nob, oc0 = (gob - g * nob) * OB;  /* in-group output channels */
    __global float* q = wp + ((long)gob * CIG + c) * T * OB;
    for (int r = 0; r < OB; ++r) {
        const int oc = oc0 + r;
        if (oc >= COG) {
            for (int t = 0; t < T; ++t) q[t * OB + r] = 0.0f;
        } else if (transposed) {
            const __global float* p = w + (((long)g * CIG + c) * COG + oc) * T + T - 1;
            for (int t = 0; t < T; ++t) q[t * OB + r] = p[-t];
        } else {
            const __global float* p = w + (((long)g * COG + oc) * CIG + c) * T;
            for (int t = 0; t < T; ++t) q[t * OB + r] = p[t];
        }
    }
}

/* kernels conv2d_k3 and conv2d_k5 (constant filter widths), conv2d_k0 (any width) */
#define KWC 0
#include "conv_kw.h"
#undef KWC
#define KWC 3
#include "conv_kw.h"
#undef KWC
#define KWC 5
#include "conv_kw.h"
#undef KWC

/* kernels conv2d_r2_k3, conv2d_r2_k5 and conv2d_r2_k0: the same with two output rows */
#define KWC 0
#include "conv_rows.h"
#undef KWC
#define KWC 3
#include "conv_rows.h"
#undef KWC
#define KWC 5
#include "conv_rows.h"
#undef KWC

/* kernels conv2d_wgrad_k3, conv2d_wgrad_k5 and conv2d_wgrad_k0: the weight gradient */
#define KWC 0
#include "conv_wgrad.h"
#undef KWC
#define KWC 3
#include "conv_wgrad.h"
#undef KWC
#define KWC 5
#include "conv_wgrad.h"
#undef KWC

/* out[e] (+)= sum over chunks k of part[k][e], the chunks added in order (deterministic);
 * the previous out[e] is added last when accumulate. One work-item per weight. */
KERNEL void conv2d_wgrad_reduce(__global const float* part, const int chunks, const int size,
                                const int accumulate, __global float* out) {
    const int e = get_global_id(0);
    if (e >= size) return;
    float s = part[e];
    for (int k = 1; k < chunks; ++k) s += part[(long)k * size + e];
    out[e] = accumulate ? out[e] + s : s;
}
