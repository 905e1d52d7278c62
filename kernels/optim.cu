// gpuad: fused optimizer updates over flat parameter buffers (one launch per dtype and step).
// T is the data type (__half, float, double), A the type the math runs in.
#include <cuda_fp16.h>

#include "optim.cuh"

namespace gpuad {

template <typename T, typename A>
__global__ void sgd_update(T* p, const T* g, T* buf, const double* hyper, index_t n) {
    for (index_t i = blockIdx.x * (index_t)blockDim.x + threadIdx.x; i < n;
         i += (index_t)blockDim.x * gridDim.x) {
        sgd_element<T, A>(p, g, buf, hyper, i);
    }
}

template <typename T, typename A>
__global__ void adam_update(T* p, const T* g, T* m, T* v, const double* hyper, index_t n) {
    for (index_t i = blockIdx.x * (index_t)blockDim.x + threadIdx.x; i < n;
         i += (index_t)blockDim.x * gridDim.x) {
        adam_element<T, A>(p, g, m, v, hyper, i);
    }
}

}  // namespace gpuad
