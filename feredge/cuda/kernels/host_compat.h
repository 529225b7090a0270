// Just enough of CUDA for g++ to compile preprocess.cu as host C++ (tests/test_kernel_host.py).
//
// Why: the kernel's arithmetic (crop, bilinear, colour, normalisation, fp16 rounding, pitch, mirroring) can then be
// checked against the NumPy reference on any CI machine; host_launch.cpp runs the grid sequentially, which is
// equivalent because the kernel has no shared memory, no barriers and no inter-thread communication.
// Build with -ffp-contract=off: each float operation rounds once, as NumPy's do (nvcc may fuse a*b+c into FMA).
#pragma once

#include <math.h>  // fmaxf, floorf: the same IEEE single-precision functions as CUDA's
#include <stdint.h>
#include <string.h>

#define FEREDGE_HOST_BUILD 1
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict

struct uint3 {
    unsigned x, y, z;
};
typedef uint3 dim3;

// The launch coordinates the kernel reads; host_launch.cpp sets them before each "thread".
inline uint3 blockIdx, threadIdx;
inline dim3 blockDim, gridDim;

struct float3 {
    float x, y, z;
};

inline float3 make_float3(float x, float y, float z) { return float3{x, y, z}; }

// PTX cvt.rn.f16.f32: round to nearest, ties to even, with fp16 subnormals (no flush to zero), overflow to ±inf
// (|v| >= 65520, the midpoint above 65504) and NaN to 0x7fff (CUDART_NAN_FP16, as cuda_fp16.hpp's host path).
inline unsigned short feredge_cvt_rn_f16_f32(float v) {
    uint32_t x;
    memcpy(&x, &v, sizeof x);
    const uint32_t sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return 0x7fffu;
    if (ax >= 0x477ff000u) return (unsigned short)(sign | 0x7c00u);
    if (ax >= 0x38800000u) {  // fp16 normal: rebias the exponent (127 -> 15), keep 10 mantissa bits, round
        uint32_t h = (ax >> 13) - (112u << 10);
        const uint32_t rest = ax & 0x1fffu;
        h += rest > 0x1000u || (rest == 0x1000u && (h & 1u));  // a carry into the exponent is still correct
        return (unsigned short)(sign | h);
    }
    if (ax <= 0x33000000u) return (unsigned short)sign;  // <= 2^-25 (half the smallest subnormal): ties to 0
    // fp16 subnormal: the value in units of 2^-24 is the 24-bit significand shifted right by 126 - exponent.
    const uint32_t shift = 126u - (ax >> 23), m = (ax & 0x7fffffu) | 0x800000u;
    uint32_t h = m >> shift;
    const uint32_t rest = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    h += rest > half || (rest == half && (h & 1u));  // rounding up to 0x400 gives the smallest normal, correctly
    return (unsigned short)(sign | h);
}
