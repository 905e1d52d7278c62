// gpuad: row-wise math (softmax, log_softmax, logsumexp and their backward; fused softmax
// cross-entropy), written once for any group of threads that shares a row.
//
// A `Group` says which member this thread is (`rank`, `size`) and reduces a value over the
// group (`max`, `sum`). The device kernels in rowwise.cu use a warp (shuffles) or a whole block
// (shared memory) per row; tests/test_rowwise_host.py runs the same functions on the host with a
// group of one thread, against the NumPy backend. Values are accumulated in `A` (float for
// float16 and float32 data, double for double); every reduction has a fixed order, so results
// are deterministic (no atomics).
#ifndef GPUAD_ROWWISE_CUH
#define GPUAD_ROWWISE_CUH

#include "elementwise.cuh"

// The modes GPUAD_SOFTMAX, GPUAD_LOG_SOFTMAX and GPUAD_LOGSUMEXP are defined by whoever compiles
// this file, from gpuad/backends/kernel_table.py's RowMode (row_mode_defines).
#ifndef GPUAD_LOGSUMEXP
#error "compile with the #defines of gpuad.backends.kernel_table.row_mode_defines()"
#endif

namespace gpuad {

// the identity of max over a row: -inf
template <typename A> GPUAD_HD A neg_inf() { return -A(1) / A(0); }
// what a row whose label lies outside it gets: nan
template <typename A> GPUAD_HD A quiet_nan() { return A(0) / A(0); }

template <typename A> GPUAD_HD bool finite(A v) { return v == v && v - v == A(0); }

// mode: softmax, log_softmax or logsumexp (one value per row, in out[0])
template <typename A, typename T, typename Group>
GPUAD_HD void softmax_row(const Group& grp, int mode, const T* x, T* out, index_t cols) {
    A m = neg_inf<A>();
    for (index_t j = grp.rank(); j < cols; j += grp.size()) {
        A v = A(x[j]);
        m = (v > m || v != v) ? v : m;  // nan wins, as NumPy's max
    }
    m = grp.max(m);
    // logsumexp shifts by a finite max only: an all -inf row gives -inf, an inf gives inf;
    // softmax and log_softmax by the max itself (an infinite max gives nan), as the NumPy
    // backend and PyTorch
    A shift = (mode == GPUAD_LOGSUMEXP && !finite(m)) ? A(0) : m;
    A s = A(0);
    for (index_t j = grp.rank(); j < cols; j += grp.size()) s += exp(A(x[j]) - shift);
    s = grp.sum(s);
    if (mode == GPUAD_LOGSUMEXP) {
        if (grp.rank() == 0) out[0] = T(log(s) + shift);
        return;
    }
    // log_softmax is (x - m) - log(s), not x - (m + log(s)): next to a large max, m + log(s)
    // rounds log(s) away (float [1e8, 1e8] would give [0, 0])
    A ls = log(s);
    for (index_t j = grp.rank(); j < cols; j += grp.size()) {
        A z = A(x[j]) - m;
        out[j] = mode == GPUAD_SOFTMAX ? T(exp(z) / s) : T(z - ls);
    }
}

// softmax: dx = y (g - sum(g y)); log_softmax: dx = g - exp(y) sum(g);
// logsumexp (y and g one per row): dx = g exp(x - y)
template <typename A, typename T, typename Group>
GPUAD_HD void softmax_row_backward(const Group& grp, int mode, const T* g, const T* y,
                                   const T* x, T* dx, index_t cols) {
    if (mode == GPUAD_LOGSUMEXP) {
        A gr = A(g[0]), lse = A(y[0]);
        for (index_t j = grp.rank(); j < cols; j += grp.size()) {
            dx[j] = T(gr * exp(A(x[j]) - lse));
        }
        return;
    }
    A s = A(0);
    for (index_t j = grp.rank(); j < cols; j += grp.size()) {
        s += mode == GPUAD_SOFTMAX ? A(g[j]) * A(y[j]) : A(g[j]);
    }
    s = grp.sum(s);
    for (index_t j = grp.rank(); j < cols; j += grp.size()) {
        A gj = A(g[j]), yj = A(y[j]);
        dx[j] = mode == GPUAD_SOFTMAX ? T(yj * (gj - s)) : T(gj - exp(yj) * s);
    }
}

// Softmax cross-entropy of one row with label smoothing eps: the target is
// q = (1 - eps) onehot(label) + eps / C, the loss -sum(q log p) = log(s) - sum(q z) with
// z = x - max (not lse - sum(q x), which rounds log(s) away next to a large max), and
// dlogits = p - q (the upstream gradient multiplies it later). A row whose label is
// ignore_index gets loss 0 and dlogits 0; one whose label is outside [0, cols) gets nan and
// nan, and reads nothing outside the row (gpuad reports such labels at its next host read).
template <typename A, typename T, typename Group>
GPUAD_HD void cross_entropy_row(const Group& grp, const T* x, index_t label, index_t ignore_index,
                                A eps, T* loss, T* dlogits, index_t cols) {
    if (label == ignore_index || label < 0 || label >= cols) {
        const T fill = label == ignore_index ? T(0) : T(quiet_nan<A>());
        for (index_t j = grp.rank(); j < cols; j += grp.size()) dlogits[j] = fill;
        if (grp.rank() == 0) loss[0] = fill;
        return;
    }
    A m = neg_inf<A>();
    for (index_t j = grp.rank(); j < cols; j += grp.size()) {
        A v = A(x[j]);
        m = (v > m || v != v) ? v : m;
    }
    m = grp.max(m);
    A s = A(0), total = A(0);  // sum(exp(z)) and sum(z)
    for (index_t j = grp.rank(); j < cols; j += grp.size()) {
        A z = A(x[j]) - m;
        s += exp(z);
        total += z;
    }
    s = grp.sum(s);
    total = grp.sum(total);
    A off = eps / A(cols);
    for (index_t j = grp.rank(); j < cols; j += grp.size()) {
        A q = (j == label ? A(1) - eps : A(0)) + off;
        dlogits[j] = T(exp(A(x[j]) - m) / s - q);
    }
    if (grp.rank() == 0) {
        loss[0] = T(log(s) - (A(1) - eps) * (A(x[label]) - m) - off * total);
    }
}

// A group of one thread: the host, and the reference for the device groups.
struct Serial {
    GPUAD_HD int rank() const { return 0; }
    GPUAD_HD int size() const { return 1; }
    template <typename A> GPUAD_HD A max(A v) const { return v; }
    template <typename A> GPUAD_HD A sum(A v) const { return v; }
};

}  // namespace gpuad

#endif  // GPUAD_ROWWISE_CUH
