// gpuad: one element of each optimizer update, in PyTorch's formulas and order. The CUDA
// kernels in optim.cu apply them to flat buffers holding every parameter of one dtype (one
// launch per step); tests/test_optim_kernels.py runs them on the host against the CPU path.
// Hyper-parameters come as a small array of doubles on the device (the learning rate and the
// step count included), so a step needs no host synchronisation.
#ifndef GPUAD_OPTIM_CUH
#define GPUAD_OPTIM_CUH

#include "elementwise.cuh"

namespace gpuad {

// SGD: hyper = {lr, momentum, dampening, weight_decay, nesterov, step (1 at the first)}
template <typename T, typename A>
GPUAD_HD void sgd_element(T* p, const T* g, T* buf, const double* hyper, index_t i) {
    A lr = A(hyper[0]), m = A(hyper[1]), wd = A(hyper[3]);
    A pi = A(p[i]);
    A d = A(g[i]);
    if (wd != A(0)) d = d + wd * pi;
    if (m != A(0)) {
        A b = hyper[5] <= 1.0 ? d : A(buf[i]) * m + d * A(1.0 - hyper[2]);
        buf[i] = T(b);
        d = hyper[4] != 0.0 ? d + m * b : b;
    }
    p[i] = T(pi - lr * d);
}

// Adam / AdamW: hyper = {lr, beta1, beta2, eps, weight_decay, decoupled, step (already counted)}
template <typename T, typename A>
GPUAD_HD void adam_element(T* p, const T* g, T* m, T* v, const double* hyper, index_t i) {
    double lr = hyper[0], b1 = hyper[1], b2 = hyper[2], wd = hyper[4], t = hyper[6];
    A pi = A(p[i]);
    A gi = A(g[i]);
    if (wd != 0.0) {
        if (hyper[5] != 0.0) pi = pi * A(1.0 - lr * wd);
        else gi = gi + pi * A(wd);
    }
    A mi = A(m[i]);
    mi = mi + (gi - mi) * A(1.0 - b1);  // a lerp towards g, as PyTorch
    A vi = A(v[i]) * A(b2) + A(1.0 - b2) * gi * gi;  // addcmul's order
    m[i] = T(mi);
    v[i] = T(vi);
    A denom = sqrt(vi) / A(sqrt(1.0 - pow(b2, t))) + A(hyper[3]);
    p[i] = T(pi - A(lr / (1.0 - pow(b1, t))) * mi / denom);
}

}  // namespace gpuad

#endif  // GPUAD_OPTIM_CUH
