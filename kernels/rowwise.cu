// gpuad: the row-wise kernels (softmax family, fused softmax cross-entropy, fused bias-add
// plus activation). The math is in rowwise.cuh; here are the groups of threads that share a
// row and the kernels that launch them. Templates on the data type T (__half, float, double)
// and the accumulator A (float, float, double); the CUDA backend gets each instantiation by
// name (CuPy RawModule name_expressions). Every kernel indexes by hand: inputs must be
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

// The threadIdx.y rows of a block share one column (blockDim.x columns side by side); the
// partial sums are added by threadIdx.y == 0 in order of y.
struct Column {
    __device__ int rank() const { return threadIdx.y; }
    __device__ int size() const { return blockDim.y; }
    template <typename A> __device__ A max(A v) const { return v; }  // (not used)
    template <typename A> __device__ A sum(A v) const {
        __shared__ double partial[32][33];  // [y][x]: blockDim is at most (32, 32)
        partial[threadIdx.y][threadIdx.x] = double(v);
        __syncthreads();
        A total = A(0);
        for (int y = 0; y < blockDim.y; ++y) total += A(partial[y][threadIdx.x]);
        __syncthreads();
        return total;
    }
};

// ---- softmax, log_softmax, logsumexp (mode 0, 1, 2) ----------------------------------------------
// warp per row: blockDim (32, rows per block); block per row: blockDim (threads, 1)
template <typename T, typename A>
__global__ void softmax_warp(int mode, const T* x, T* out, index_t rows, index_t cols) {
    index_t row = blockIdx.x * (index_t)blockDim.y + threadIdx.y;
    if (row >= rows) return;  // a whole warp leaves together
    softmax_row<A>(Warp(), mode, x + row * cols, out + (mode == 2 ? row : row * cols), cols);
}

template <typename T, typename A>
__global__ void softmax_block(int mode, const T* x, T* out, index_t rows, index_t cols) {
    index_t row = blockIdx.x;
    softmax_row<A>(Block(), mode, x + row * cols, out + (mode == 2 ? row : row * cols), cols);
}

template <typename T, typename A>
__global__ void softmax_backward_warp(int mode, const T* g, const T* y, const T* x, T* dx,
                                      index_t rows, index_t cols) {
    index_t row = blockIdx.x * (index_t)blockDim.y + threadIdx.y;
    if (row >= rows) return;
    index_t one = mode == 2 ? row : row * cols;
    softmax_row_backward<A>(Warp(), mode, g + one, y + one, x + row * cols, dx + row * cols,
                            cols);
}

template <typename T, typename A>
__global__ void softmax_backward_block(int mode, const T* g, const T* y, const T* x, T* dx,
                                       index_t rows, index_t cols) {
    index_t row = blockIdx.x;
    index_t one = mode == 2 ? row : row * cols;
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

// ---- bias-add plus activation ---------------------------------------------------------------------
// forward, elementwise over rows x cols: z = x + b[col] (kept when z is not null), y = act(z)
template <typename T, typename A>
__global__ void bias_act_forward(int act, const T* x, const T* b, T* z, T* y, index_t n,
                                 index_t cols) {
    index_t i = blockIdx.x * (index_t)blockDim.x + threadIdx.x;
    if (i >= n) return;
    A zi = A(x[i]) + A(b[i % cols]);
    if (z) z[i] = T(zi);
    y[i] = T(activation<A>(act, zi));
}

// backward: blockDim (32 columns, up to 32 row lanes), blockIdx.y a chunk of rows_per_chunk
// rows; dz for every element, and per chunk the column sums of dz (db_partial[chunk, col]),
// which the backend adds up in a fixed order (no atomics)
template <typename T, typename A>
__global__ void bias_act_backward(int act, const T* g, const T* z, const T* y, T* dz,
                                  T* db_partial, index_t rows, index_t cols,
                                  index_t rows_per_chunk) {
    index_t col = blockIdx.x * (index_t)blockDim.x + threadIdx.x;
    index_t start = blockIdx.y * rows_per_chunk;
    index_t count = rows - start < rows_per_chunk ? rows - start : rows_per_chunk;
    bool inside = col < cols && count > 0;
    index_t at = start * cols;
    A total = bias_act_column_backward<A>(Column(), act, g + at, z + at, y + at, dz + at,
                                          inside ? count : 0, cols, inside ? col : 0);
    if (inside && threadIdx.y == 0) db_partial[blockIdx.y * cols + col] = T(total);
}

}  // namespace gpuad
