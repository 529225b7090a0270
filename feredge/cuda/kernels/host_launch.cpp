// Host driver for preprocess.cu (unchanged source, compiled by g++ through host_compat.h): runs a launch's grid
// sequentially so tests/test_kernel_host.py can compare the kernel's arithmetic with the NumPy reference, no GPU.
//   g++ -std=c++17 -O2 -ffp-contract=off -shared -fPIC host_launch.cpp -o libferedge_host.so
// Arguments arrive as cuLaunchKernel's kernelParams (one pointer per argument), built by the same Python code
// (feredge.cuda.kernel_params) that feeds the GPU, so the argument order and types are checked too.
#include "host_compat.h"
#include "preprocess.cu"

#include <cstddef>
#include <utility>

namespace {

template <typename... A, std::size_t... I>
void call(void (*kernel)(A...), void* const* params, std::index_sequence<I...>) {
    kernel(*static_cast<A*>(params[I])...);
}

template <typename... A>
void run_grid(void (*kernel)(A...), const unsigned* grid, const unsigned* block, void* const* params) {
    gridDim = {grid[0], grid[1], grid[2]};
    blockDim = {block[0], block[1], block[2]};
    for (unsigned bz = 0; bz < grid[2]; ++bz)
        for (unsigned by = 0; by < grid[1]; ++by)
            for (unsigned bx = 0; bx < grid[0]; ++bx)
                for (unsigned tz = 0; tz < block[2]; ++tz)
                    for (unsigned ty = 0; ty < block[1]; ++ty)
                        for (unsigned tx = 0; tx < block[0]; ++tx) {
                            blockIdx = {bx, by, bz};
                            threadIdx = {tx, ty, tz};
                            call(kernel, params, std::index_sequence_for<A...>{});
                        }
}

}  // namespace

extern "C" void feredge_launch(const unsigned* grid, const unsigned* block, void* const* params) {
    run_grid(fer_preprocess, grid, block, params);
}

// The kernel's own fp16 conversion (to_half_bits), exposed to test its rounding on any float.
extern "C" void feredge_half_bits(const float* in, unsigned short* out, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) out[i] = to_half_bits(in[i]);
}
