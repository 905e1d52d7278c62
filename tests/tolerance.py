"""How close a result computed on a device must be to its host reference: one rule, per dtype.

On the CPU gpuad computes with NumPy, and each test states the tolerance its reference needs
(often a few ulps, sometimes exact); that tolerance stands. A result computed by a real GPU
differs from the host's in two documented ways, so on CUDA each tolerance is raised to at
least its dtype's floor (``CUDA_FLOOR``):

* FMA contraction and CUDA's math library. NVRTC contracts ``a * b + c`` into one fused
  multiply-add (``--fmad=true``, its default), in gpuad's kernels and in CuPy's own: rounded
  once instead of twice, so each contracted operation may differ from the host's by an ulp;
  and CUDA's exp, log, tanh, erf, ... are within 1-2 ulp (double) or 1-4 ulp (single) of the
  correctly rounded value, NumPy's within about 1. A rule of n operations (gpuad's fused
  derivative kernels have up to ~20) differs by a few ulps per operation, and a subtraction of
  nearly equal terms (softmax - onehot, x - mean; x*y - x*y, which contraction turns into the
  rounding error of x*y) multiplies that by its condition number.
  float64 rtol 1e-11, ~4.5e4 ulp (2^-52): 20 operations * 2 ulp * a condition number of 1e3,
  which the float64 tests reach on purpose (values next to overflow, tiny divisors, large
  logits). float32 rtol 1e-5, ~84 ulp (2^-23): 20 operations * 4 ulp; the float32 tests use
  well-conditioned values. float16 rtol 2e-3, two half ulps (2^-10): computed in float32 and
  rounded once, a float32 result a few ulps off may round to either neighbour.
  The relative floor holds each element to ulps of itself. An element that cancels to (nearly)
  zero is off by a few ulps of its *terms*, not of itself: a test that has one passes the
  magnitude of its terms per element (``scale``), and its absolute floor is that rtol times
  that magnitude, element by element; never the largest value of the whole result, which
  would leave the small elements of a mixed-scale result unchecked. A wrong formula is off by
  far more (1e-3 and up).
* Flush to zero. CuPy compiles every kernel with ``-ftz=true``: single-precision subnormal
  inputs and results are flushed to (signed) zero; double precision keeps its subnormals. A
  float32 value below the smallest normal float32 (1.18e-38) may come back as 0, so float32
  gets an absolute floor of that smallest normal. float16 is computed in float32 (a half
  subnormal is a normal float32, so FTZ does not reach it) and rounded once: its absolute
  floor is two of its subnormal steps, 2^-23.

The floor is for results real CuPy computed. On the CuPy stand-in (tests/fake_cupy) a "cuda"
result is NumPy's, computed on the host as the CPU's is, so it keeps the test's own tolerance:
a floor there would only weaken the check. Tests of the kernels' host build against itself stay
exact: the same code on the same host.
"""
import sys

import numpy as np

#: dtype -> (rtol, atol): the least a comparison of a CUDA result gets (see above)
CUDA_FLOOR = {
    np.dtype(np.float64): (1e-11, 0.0),
    np.dtype(np.float32): (1e-5, float(np.finfo(np.float32).tiny)),
    np.dtype(np.float16): (2e-3, 2.0 ** -23),
}


def on_the_stand_in():
    """Whether the CuPy in place is the stand-in (its version says so), so a "cuda" result was
    computed by NumPy on the host."""
    return "+standin" in str(getattr(sys.modules.get("cupy"), "__version__", ""))


def tolerance(device, dtype, rtol=0.0, atol=0.0, scale=None):
    """``dict(rtol=..., atol=...)`` for a result of ``dtype`` computed on ``device``: the test's
    own ``rtol``/``atol`` on the CPU and on the stand-in; on real CUDA each at least the dtype's
    floor, and ``atol`` at least the floor's rtol times ``scale`` (the magnitude of each
    element's terms, where it cancels; an array then, element by element)."""
    if not str(device).startswith("cuda") or on_the_stand_in():
        return dict(rtol=rtol, atol=atol)
    floor_rtol, floor_atol = CUDA_FLOOR.get(np.dtype(dtype), (0.0, 0.0))
    atol = max(atol, floor_atol)
    if scale is not None:
        atol = np.maximum(atol, floor_rtol * np.abs(np.asarray(scale, dtype=np.float64)))
    return dict(rtol=max(rtol, floor_rtol), atol=atol)


def assert_close(got, want, device, rtol=0.0, atol=0.0, dtype=None, scale=None, **kwargs):
    """``np.testing.assert_allclose`` with :func:`tolerance` for ``device``; ``dtype`` is the
    one the result was computed in (default: ``got``'s); ``scale`` as for :func:`tolerance`."""
    got = np.asarray(got)
    tol = tolerance(device, got.dtype if dtype is None else dtype, rtol, atol, scale)
    if np.ndim(tol["atol"]) == 0:
        np.testing.assert_allclose(got, want, **tol, **kwargs)
        return
    close = np.isclose(got, want, tol["rtol"], tol["atol"], kwargs.get("equal_nan", True))
    if not close.all():  # (assert_allclose takes one atol only)
        where = np.argwhere(~close).tolist()[:5]
        raise AssertionError(f"not close (rtol={tol['rtol']:g}, atol per element of the terms' "
                             f"scale): at {where}: got {got!r}, want {np.asarray(want)!r}")
