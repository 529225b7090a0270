// feredge pre-processing kernel: camera frame + N face boxes -> N (or 2N) normalised model inputs.
//
// One launch does crop (square, with margin) + bilinear resize + BGR->gray/RGB + /255 + (v-mean)/std
// (+ a mirrored copy for flip TTA) and writes float32 or fp16 straight into the inference input buffer.
// Semantics are those of feredge/runtime/preprocess.py::preprocess_frame (the CPU reference):
//   side = max(w, h) * (1 + margin), square centred on the box;
//   src = x0 + (j + 0.5) * side / S - 0.5 (pixel centres); neighbours outside the frame read as 0.
// Grid: x covers the S*S output pixels of one face, y the faces (N, or 2N with mirroring).
// No headers: the same source compiles with nvcc (CMake) and with NVRTC at run time, and with g++ for the
// GPU-free arithmetic test (host_launch.cpp + host_compat.h, tests/test_kernel_host.py).
// Arguments are scalars (no struct) so pycuda and cuda-python pass them the same way.

__device__ __forceinline__ float3 fetch(const unsigned char* frame, int width, int height, int pitch, int x, int y) {
    if (x < 0 || y < 0 || x >= width || y >= height) return make_float3(0.f, 0.f, 0.f);
    const unsigned char* px = frame + (size_t)y * pitch + (size_t)x * 3;
    return make_float3(px[0], px[1], px[2]);  // B, G, R
}

__device__ __forceinline__ unsigned short to_half_bits(float v) {
#ifdef FEREDGE_HOST_BUILD  // g++ build of the arithmetic test (host_compat.h): PTX asm has no host meaning
    return feredge_cvt_rn_f16_f32(v);
#else
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
    return h;
#endif
}

extern "C" __global__ void fer_preprocess(
    const unsigned char* __restrict__ frame, int width, int height, int pitch,  // BGR uint8, pitch in bytes
    const float* __restrict__ boxes, int n_boxes,                               // (N, 4) x, y, w, h in pixels
    float margin, int out_size, int channels, int out_fp16,
    float mean0, float mean1, float mean2, float inv_std0, float inv_std1, float inv_std2,
    void* __restrict__ out) {
    const int S = out_size;
    const int pix = blockIdx.x * blockDim.x + threadIdx.x;
    const int face = blockIdx.y;  // gridDim.y is N, or 2N when mirrored copies are wanted
    if (pix >= S * S) return;
    const int box = face % n_boxes;
    const bool mirrored = face >= n_boxes;
    const int i = pix / S;
    const int j_out = pix % S;
    const int j = mirrored ? S - 1 - j_out : j_out;

    const float bx = boxes[box * 4 + 0], by = boxes[box * 4 + 1];
    const float bw = boxes[box * 4 + 2], bh = boxes[box * 4 + 3];
    const float side = fmaxf(bw, bh) * (1.f + margin);
    const float scale = side / S;
    const float sx = bx + bw * 0.5f - side * 0.5f + (j + 0.5f) * scale - 0.5f;
    const float sy = by + bh * 0.5f - side * 0.5f + (i + 0.5f) * scale - 0.5f;
    const int x0 = (int)floorf(sx), y0 = (int)floorf(sy);
    const float fx = sx - x0, fy = sy - y0;

    const float3 a = fetch(frame, width, height, pitch, x0, y0), b = fetch(frame, width, height, pitch, x0 + 1, y0);
    const float3 c = fetch(frame, width, height, pitch, x0, y0 + 1);
    const float3 d = fetch(frame, width, height, pitch, x0 + 1, y0 + 1);
    const float w00 = (1.f - fy) * (1.f - fx), w01 = (1.f - fy) * fx, w10 = fy * (1.f - fx), w11 = fy * fx;
    const float B = a.x * w00 + b.x * w01 + c.x * w10 + d.x * w11;
    const float G = a.y * w00 + b.y * w01 + c.y * w10 + d.y * w11;
    const float R = a.z * w00 + b.z * w01 + c.z * w10 + d.z * w11;

    const float mean[3] = {mean0, mean1, mean2};
    const float inv_std[3] = {inv_std0, inv_std1, inv_std2};
    float v[3];
    const int nc = channels;
    if (nc == 1) {
        v[0] = 0.114f * B + 0.587f * G + 0.299f * R;
    } else {
        v[0] = R; v[1] = G; v[2] = B;
    }
    const size_t plane = (size_t)S * S;
    const size_t base = (size_t)face * nc * plane + pix;
    for (int ch = 0; ch < nc; ++ch) {
        const float y = (v[ch] * (1.f / 255.f) - mean[ch]) * inv_std[ch];
        if (out_fp16) {
            static_cast<unsigned short*>(out)[base + ch * plane] = to_half_bits(y);
        } else {
            static_cast<float*>(out)[base + ch * plane] = y;
        }
    }
}
