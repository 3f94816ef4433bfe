/* Shared helpers for minidnn kernels. Plain OpenCL C 1.2: no vendor extensions.
 * On PoCL, write a*b + c rather than fma()/mad() (about 9x faster there), and prefer ternaries
 * to fmin/fmax/clamp. */
#ifndef MINIDNN_COMMON_H
#define MINIDNN_COMMON_H

/* Qualifier of the kernels written as vector code per work-item (explicit float4/float8,
 * loops over a run of elements). Intel's CPU runtime otherwise vectorizes across work-items:
 * it packs neighbouring work-items into SIMD lanes and turns each one's loads into gathers,
 * which made im2row 6x, batch norm 18x and the elementwise kernels 3-10x slower than with its
 * vectorizer off (issue 20). A vector-typed vec_type_hint (core OpenCL 1.2) tells it the
 * kernel is vectorized already; PoCL and GPU drivers treat it as a hint they may ignore. */
#define KERNEL __kernel __attribute__((vec_type_hint(float4)))

/* Soft-threshold (prox of t*|w|): sign(w) * max(|w| - t, 0). */
inline float soft_threshold1(float w, float t) {
    return w > t ? w - t : (w < -t ? w + t : 0.0f);
}

/* Counter-based RNG, the same formula as minidnn.backend.base.hash_uniform. */
inline float hash_uniform1(uint seed, uint counter, uint i) {
    uint x = i * 0x9E3779B1u + seed * 0x85EBCA77u + counter * 0xC2B2AE3Du;
    x ^= x >> 16; x *= 0x85EBCA6Bu;
    x ^= x >> 13; x *= 0xC2B2AE35u;
    x ^= x >> 16;
    return (float)(x >> 8) * (1.0f / 16777216.0f);
}

/* The nonzero values of the forward sparse products (csr.cl, csr_conv.cl): float values, or,
 * built with QCODES defined (the q8 / q16 variants, minidnn/backend/cl_programs.py), a per-layer
 * codebook read through uchar / ushort codes: quantized weights stay quantized on the device. */
#ifdef QCODES
#define VALUE_ARGS global const QCODES* codes, global const float* codebook
#define VALUE(e) codebook[codes[e]]
#else
#define VALUE_ARGS global const float* values
#define VALUE(e) values[e]
#endif

#endif
