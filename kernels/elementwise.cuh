// gpuad: the elementwise math the CUDA backend launches (SPEC section 5), and nothing else.
//
// Each unary op whose derivative rule reads a value has `<kernel>_bwd(g, s, params...)`, where
// `s` is the input x or the output y, whichever the op's rule reads; the ops whose forward runs
// in a kernel of its own also have `<kernel>_fwd(x, params...)`. The op's row in
// gpuad/ops/elementwise.py names them (`kernel=`, `kernel_forward=`), and the backend builds
// what the rows name; tests/test_kernels_host.py fails on a function here that no row names.
// The formulas are the rules' own, written in the same numerically stable forms, so they agree
// at the edges too (inf, nan, 0): tests/test_kernels_host.py compiles this header for the host
// and holds it equal to the NumPy backend and the rules. float16 is computed in float32 by the
// kernels that include this.
#ifndef GPUAD_ELEMENTWISE_CUH
#define GPUAD_ELEMENTWISE_CUH

#if defined(__CUDACC__)
#define GPUAD_HD __host__ __device__ __forceinline__
#else
#include <cmath>
#define GPUAD_HD inline
using std::abs; using std::cos; using std::cosh; using std::erf; using std::exp;
using std::expm1; using std::log; using std::log1p; using std::sin;
using std::sinh; using std::sqrt; using std::tanh; using std::isinf;
#endif

namespace gpuad {

// sizes and positions: 64 bits on every platform (``long`` is 32 on Windows)
typedef long long index_t;

// 2/sqrt(pi), 1/sqrt(2), 1/sqrt(2 pi), sqrt(2/pi)
#define GPUAD_TWO_OVER_SQRT_PI 1.1283791670955126
#define GPUAD_INV_SQRT_2 0.7071067811865476
#define GPUAD_INV_SQRT_2PI 0.3989422804014327
#define GPUAD_SQRT_2_OVER_PI 0.7978845608028654

// helpers (no kernel of their own)
template <typename T> GPUAD_HD T step(T x) { return x > T(0) ? T(1) : T(0); }
template <typename T> GPUAD_HD T sign(T x) {
    return x > T(0) ? T(1) : (x < T(0) ? T(-1) : (x == T(0) ? T(0) : x));  // nan stays nan
}

// ---- forward ---------------------------------------------------------------------------------
template <typename T> GPUAD_HD T rsqrt_fwd(T x) { return T(1) / sqrt(x); }

// sigmoid through exp(-|x|): never overflows
template <typename T> GPUAD_HD T sigmoid_fwd(T x) {
    T e = exp(-abs(x));
    T r = T(1) / (T(1) + e);
    return x >= T(0) ? r : e * r;
}
template <typename T> GPUAD_HD T silu_fwd(T x) { return x * sigmoid_fwd(x); }
template <typename T> GPUAD_HD T leaky_relu_fwd(T x, T slope) { return x > T(0) ? x : x * slope; }
template <typename T> GPUAD_HD T elu_fwd(T x, T alpha) {
    return x > T(0) ? x : alpha * expm1(x);  // (nan stays nan)
}
template <typename T> GPUAD_HD T gelu_erf_fwd(T x) {
    return T(0.5) * x * (T(1) + erf(x * T(GPUAD_INV_SQRT_2)));
}
template <typename T> GPUAD_HD T gelu_tanh_fwd(T x) {
    T c = x > T(100) ? T(100) : (x < T(-100) ? T(-100) : x);  // tanh saturated past 100
    T u = T(GPUAD_SQRT_2_OVER_PI) * (c + T(0.044715) * c * c * c);
    return T(0.5) * x * (T(1) + tanh(u));
}
// log(1 + exp(bx)) / b as max(bx, 0) + log1p(exp(-|bx|)); x itself past the threshold
template <typename T> GPUAD_HD T softplus_fwd(T x, T beta, T threshold) {
    T bx = x * beta;
    T soft = ((bx > T(0) ? bx : T(0)) + log1p(exp(-abs(bx)))) / beta;
    return bx > threshold ? x : soft;
}

// ---- derivative (g: the output gradient; s: x or y as the table says) -------------------------
template <typename T> GPUAD_HD T abs_bwd(T g, T x) { return g * sign(x); }    // abs'(0) = 0
template <typename T> GPUAD_HD T exp_bwd(T g, T y) { return g * y; }
template <typename T> GPUAD_HD T expm1_bwd(T g, T y) { return g * (y + T(1)); }
template <typename T> GPUAD_HD T log_bwd(T g, T x) { return g / x; }
template <typename T> GPUAD_HD T log1p_bwd(T g, T x) { return g / (x + T(1)); }
template <typename T> GPUAD_HD T sqrt_bwd(T g, T y) { return g / (y * T(2)); }   // inf at 0
template <typename T> GPUAD_HD T rsqrt_bwd(T g, T y) { return g * y * y * y * T(-0.5); }
template <typename T> GPUAD_HD T square_bwd(T g, T x) { return g * x * T(2); }
template <typename T> GPUAD_HD T reciprocal_bwd(T g, T y) { return -g * y * y; }
template <typename T> GPUAD_HD T sin_bwd(T g, T x) { return g * cos(x); }
template <typename T> GPUAD_HD T cos_bwd(T g, T x) { return -g * sin(x); }
template <typename T> GPUAD_HD T tan_bwd(T g, T y) { return g * y * y + g; }
template <typename T> GPUAD_HD T tanh_bwd(T g, T y) { return g * (T(1) - y * y); }
template <typename T> GPUAD_HD T sinh_bwd(T g, T x) { return g * cosh(x); }
template <typename T> GPUAD_HD T cosh_bwd(T g, T x) { return g * sinh(x); }
// g / (1 + x^2), as (g / x) / (x + 1 / x) past |x| = 1 (x^2 would overflow first)
template <typename T> GPUAD_HD T arctan_bwd(T g, T x) {
    T xx = x * x;  // (where x^2 overflows the result may not: g / x / (x + 1 / x) then)
    return isinf(xx) ? g / x / (x + T(1) / x) : g / (xx + T(1));
}
template <typename T> GPUAD_HD T erf_bwd(T g, T x) {
    return g * exp(-x * x) * T(GPUAD_TWO_OVER_SQRT_PI);
}
// sigmoid's gradient from its output
template <typename T> GPUAD_HD T sigmoid_bwd(T g, T y) { return g * y * (T(1) - y); }
// relu'(0) = 0, relu'(nan) = 1 (PyTorch); selected, so an inf or nan g where y <= 0 gives 0
template <typename T> GPUAD_HD T relu_bwd(T g, T y) { return y <= T(0) ? T(0) : g; }
// d/dx x / (1 + |x|) = 1 / (1 + |x|)^2
template <typename T> GPUAD_HD T softsign_bwd(T g, T x) { T d = T(1) + abs(x); return g / (d * d); }
// d/dx x sigmoid(x) = s (1 + x (1 - s))
template <typename T> GPUAD_HD T silu_bwd(T g, T x) {
    T s = sigmoid_fwd(x);
    return g * (s * (x * (T(1) - s) + T(1)));
}
template <typename T> GPUAD_HD T leaky_relu_bwd(T g, T x, T slope) {
    return g * (step(x) * (T(1) - slope) + slope);
}
template <typename T> GPUAD_HD T elu_bwd(T g, T x, T alpha) {
    return x <= T(0) ? g * alpha * exp(x) : g;  // elu'(nan) = 1 (PyTorch)
}
// Phi(x) + x phi(x)
template <typename T> GPUAD_HD T gelu_erf_bwd(T g, T x) {
    return g * ((erf(x * T(GPUAD_INV_SQRT_2)) + T(1)) * T(0.5)
                + x * exp(x * x * T(-0.5)) * T(GPUAD_INV_SQRT_2PI));
}
// (x taken at +-100 past it, where tanh has saturated: no inf * 0 from an overflowed x^3)
template <typename T> GPUAD_HD T gelu_tanh_bwd(T g, T x) {
    x = x > T(100) ? T(100) : (x < T(-100) ? T(-100) : x);
    T t = tanh((x + x * x * x * T(0.044715)) * T(GPUAD_SQRT_2_OVER_PI));
    T du = (x * x * T(3 * 0.044715) + T(1)) * T(GPUAD_SQRT_2_OVER_PI);
    return g * ((t + T(1)) * T(0.5) + x * (T(1) - t * t) * du * T(0.5));
}
template <typename T> GPUAD_HD T softplus_bwd(T g, T x, T beta, T threshold) {
    return x * beta > threshold ? g : g * sigmoid_fwd(x * beta);
}

}  // namespace gpuad

#endif  // GPUAD_ELEMENTWISE_CUH
