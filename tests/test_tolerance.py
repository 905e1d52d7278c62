"""tests/tolerance.py: the CPU keeps each test's tolerance; CUDA gets the dtype's floor for FMA
contraction and flush-to-zero, and no more (a formula error still fails)."""
import numpy as np
import pytest
from tolerance import CUDA_FLOOR, assert_close, tolerance


def test_the_cpu_keeps_the_tests_own_tolerance():
    assert tolerance("cpu", np.float64, 1e-13, 1e-15, want=[1e9]) == dict(rtol=1e-13, atol=1e-15)
    with pytest.raises(AssertionError):
        assert_close(np.array([1 + 1e-12]), [1.0], "cpu", rtol=1e-13)


#: dtype -> how far off a correct CUDA result may be, in the dtype's ulps: 20 operations * 2
#: ulp each; float16 is computed in float32 and rounded once, so one half ulp
BUDGET = {np.float64: 40, np.float32: 40, np.float16: 1}


@pytest.mark.parametrize("dtype", list(BUDGET), ids=lambda d: np.dtype(d).name)
def test_cuda_allows_some_ulps_per_operation_and_no_formula_error(dtype):
    ulp = float(np.finfo(dtype).eps)
    assert CUDA_FLOOR[np.dtype(dtype)][0] <= 1e5 * ulp
    off = np.array([1 + BUDGET[dtype] * ulp], dtype=dtype)
    assert off[0] != 1
    assert_close(off, [1.0], "cuda:0", rtol=1e-15)
    with pytest.raises(AssertionError):
        assert_close(off, [1.0], "cpu", rtol=1e-15)
    with pytest.raises(AssertionError):
        assert_close(np.array([1.01], dtype=dtype), [1.0], "cuda", rtol=1e-15)


def test_an_element_that_cancels_is_compared_at_the_scale_of_its_terms():
    # fma(x, y, -(x*y)) is the rounding error of x*y, where the host subtracts to exactly 0
    x = np.float64(0.1)
    residue = np.array([3.0, 1e-18])
    assert_close(residue, [3.0, 0.0], "cuda", rtol=1e-13)
    with pytest.raises(AssertionError):
        assert_close(residue, [3.0, 0.0], "cpu", rtol=1e-13)
    with pytest.raises(AssertionError):  # a residue of a wrong formula's size still fails
        assert_close(np.array([3.0, 1e-6]), [3.0, 0.0], "cuda", rtol=1e-13)
    assert tolerance("cuda", np.float64, want=[x, -2.0, np.inf])["atol"] == 2.0 * 1e-11


def test_float32_subnormals_may_flush_to_zero_on_cuda_only():
    tiny = np.finfo(np.float32).smallest_subnormal * 7
    assert_close(np.array([0.0, 1.0], dtype=np.float32), [tiny, 1.0], "cuda", rtol=1e-7)
    with pytest.raises(AssertionError):
        assert_close(np.array([0.0, 1.0], dtype=np.float32), [tiny, 1.0], "cpu", rtol=1e-7)
    # float64 keeps its subnormals on CUDA (-ftz is single precision only)
    with pytest.raises(AssertionError):
        assert_close(np.array([0.0]), [5e-320], "cuda", rtol=1e-7)


def test_the_dtype_the_result_was_computed_in_decides():
    got = np.array([1 + 1e-6])  # a float32 result, compared as float64
    assert_close(got, [1.0], "cuda", dtype=np.float32)
    with pytest.raises(AssertionError):
        assert_close(got, [1.0], "cuda")
