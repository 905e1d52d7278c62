// gpuad: the row-wise kernels (softmax family, fused softmax cross-entropy). The math is in
// rowwise.cuh; here are the groups of threads that share a row and the kernels that launch
// them. Templates on the data type T (__half, float, double) and the accumulator A (float,
// float, double); the CUDA backend gets each instantiation by name (CuPy RawModule
// name_expressions). Every kernel indexes by hand: inputs must be
// C-contiguous, which the backend makes explicit.
#include <cuda_fp16.h>

#include "rowwise.cuh"

namespace gpuad {

template <typename A> __device__ A shfl_xor(A v, int o) {
    return __shfl_xor_sync(0xffffffffu, v, o);
}

// Butterfly reductions: every lane ends with the same value, in the same order of operations.
template <typename A> __device__ A warp_sum(A v) {
    for (int o = 16; o > 0; o >>= 1) v += shfl_xor(v, o);
    return v;
}

template <typename A> __device__ A warp_max(A v) {
    for (int o = 16; o > 0; o >>= 1) {
        A w = shfl_xor(v, o);
        v = (w > v || w != w) ? w : v;  // nan wins
    }
    return v;
}

// 32 lanes (threadIdx.x) share a row.
struct Warp {
    __device__ int rank() const { return threadIdx.x; }
    __device__ int size() const { return 32; }
    template <typename A> __device__ A max(A v) const { return warp_max(v); }
    template <typename A> __device__ A sum(A v) const { return warp_sum(v); }
};

// The whole block (threadIdx.x, a multiple of 32 threads) shares a row: warp reductions, then
// the warps' partials in shared memory, combined by the first warp in a fixed order.
struct Block {
    __device__ int rank() const { return threadIdx.x; }
    __device__ int size() const { return blockDim.x; }

    template <typename A> __device__ A combine(A v, bool is_max) const {
        __shared__ double partial[33];
        v = is_max ? warp_max(v) : warp_sum(v);
        int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
        __syncthreads();  // the previous reduction has read partial[]
        if (lane == 0) partial[warp] = double(v);
        __syncthreads();
        if (warp == 0) {
            A t = lane < warps ? A(partial[lane]) : (is_max ? neg_inf<A>() : A(0));
            t = is_max ? warp_max(t) : warp_sum(t);
            if (lane == 0) partial[32] = double(t);
        }
        __syncthreads();
        return A(partial[32]);
    }
    template <typename A> __device__ A max(A v) const { return combine(v, true); }
    template <typename A> __device__ A sum(A v) const { return combine(v, false); }
};

// ---- softmax, log_softmax, logsumexp (the mode: GPUAD_SOFTMAX, ...) ------------------------------
// warp per row: blockDim (32, rows per block); block per row: blockDim (threads, 1)
template <typename T, typename A>
__global__ void softmax_warp(int mode, const T* x, T* out, index_t rows, index_t cols) {
    index_t row = blockIdx.x * (index_t)blockDim.y + threadIdx.y;
    if (row >= rows) return;  // a whole warp leaves together
    softmax_row<A>(Warp(), mode, x + row * cols, out + (mode == GPUAD_LOGSUMEXP ? row : row * cols), cols);
}

template <typename T, typename A>
__global__ void softmax_block(int mode, const T* x, T* out, index_t rows, index_t cols) {
    index_t row = blockIdx.x;
    softmax_row<A>(Block(), mode, x + row * cols, out + (mode == GPUAD_LOGSUMEXP ? row : row * cols), cols);
}

template <typename T, typename A>
__global__ void softmax_backward_warp(int mode, const T* g, const T* y, const T* x, T* dx,
                                      index_t rows, index_t cols) {
    index_t row = blockIdx.x * (index_t)blockDim.y + threadIdx.y;
    if (row >= rows) return;
    index_t one = mode == GPUAD_LOGSUMEXP ? row : row * cols;
    softmax_row_backward<A>(Warp(), mode, g + one, y + one, x + row * cols, dx + row * cols,
                            cols);
}

template <typename T, typename A>
__global__ void softmax_backward_block(int mode, const T* g, const T* y, const T* x, T* dx,
                                       index_t rows, index_t cols) {
    index_t row = blockIdx.x;
    index_t one = mode == GPUAD_LOGSUMEXP ? row : row * cols;
    softmax_row_backward<A>(Block(), mode, g + one, y + one, x + row * cols, dx + row * cols,
                            cols);
}

// ---- fused softmax cross-entropy: per-row loss and dlogits = p - q in one pass -------------------
template <typename T, typename A>
__global__ void cross_entropy_warp(const T* x, const long long* labels, long long ignore_index,
                                   double eps, T* loss, T* dlogits, index_t rows, index_t cols) {
    index_t row = blockIdx.x * (index_t)blockDim.y + threadIdx.y;
    if (row >= rows) return;
    cross_entropy_row<A>(Warp(), x + row * cols, index_t(labels[row]), index_t(ignore_index), A(eps),
                         loss + row, dlogits + row * cols, cols);
}

template <typename T, typename A>
__global__ void cross_entropy_block(const T* x, const long long* labels, long long ignore_index,
                                    double eps, T* loss, T* dlogits, index_t rows, index_t cols) {
    index_t row = blockIdx.x;
    cross_entropy_row<A>(Block(), x + row * cols, index_t(labels[row]), index_t(ignore_index), A(eps),
                         loss + row, dlogits + row * cols, cols);
}

}  // namespace gpuad
