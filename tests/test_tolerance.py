"""tests/tolerance.py: the CPU and the CuPy stand-in keep each test's tolerance; a result real
CuPy computed gets the dtype's floor for FMA contraction and flush-to-zero, element by element,
and no more (a formula error still fails, in the small elements of a mixed-scale result too)."""
import numpy as np
import pytest
import tolerance as tolerance_module
from fake_cupy import installed
from tolerance import CUDA_FLOOR, assert_close, tolerance


@pytest.fixture
def real_cuda(monkeypatch):
    """Compare as for a result real CuPy computed (whatever CuPy is in place here)."""
    monkeypatch.setattr(tolerance_module, "on_the_stand_in", lambda: False)


def test_the_cpu_keeps_the_tests_own_tolerance():
    assert tolerance("cpu", np.float64, 1e-13, 1e-15, scale=[1e9]) == dict(rtol=1e-13,
                                                                            atol=1e-15)
    with pytest.raises(AssertionError):
        assert_close(np.array([1 + 1e-12]), [1.0], "cpu", rtol=1e-13)


def test_the_stand_in_keeps_the_tests_own_tolerance(monkeypatch):
    """Its "cuda" results are NumPy's, computed on the host: a floor would only weaken CI."""
    with installed(monkeypatch):
        assert tolerance_module.on_the_stand_in()
        assert tolerance("cuda", np.float32, 1e-7, scale=[1e9]) == dict(rtol=1e-7, atol=0.0)
        with pytest.raises(AssertionError):
            assert_close(np.array([1 + 1e-12]), [1.0], "cuda", rtol=1e-13)


#: dtype -> how far off a correct CUDA result may be, in the dtype's ulps: 20 operations * 2
#: ulp each; float16 is computed in float32 and rounded once, so one half ulp
BUDGET = {np.float64: 40, np.float32: 40, np.float16: 1}
#: dtype -> the floor's rtol in ulps, as tests/tolerance.py's docstring justifies it
FLOOR_ULPS = {np.float64: 4.6e4, np.float32: 85, np.float16: 2.1}


@pytest.mark.parametrize("dtype", list(BUDGET), ids=lambda d: np.dtype(d).name)
def test_cuda_allows_some_ulps_per_operation_and_no_formula_error(dtype, real_cuda):
    ulp = float(np.finfo(dtype).eps)
    assert BUDGET[dtype] * ulp <= CUDA_FLOOR[np.dtype(dtype)][0] <= FLOOR_ULPS[dtype] * ulp
    off = np.array([1 + BUDGET[dtype] * ulp], dtype=dtype)
    assert off[0] != 1
    assert_close(off, [1.0], "cuda:0", rtol=1e-15)
    with pytest.raises(AssertionError):
        assert_close(off, [1.0], "cpu", rtol=1e-15)
    with pytest.raises(AssertionError):
        assert_close(np.array([1.01], dtype=dtype), [1.0], "cuda", rtol=1e-15)


def test_an_element_that_cancels_is_compared_at_the_scale_of_its_terms(real_cuda):
    # fma(x, y, -(x*y)) is the rounding error of x*y, where the host subtracts to exactly 0
    x = np.float64(0.1)
    terms = [3.0, x * x]
    residue = np.array([3.0, float(np.finfo(np.float64).eps) * x * x])
    assert_close(residue, [3.0, 0.0], "cuda", rtol=1e-13, scale=terms)
    with pytest.raises(AssertionError):  # (without its terms' scale: ulps of 0)
        assert_close(residue, [3.0, 0.0], "cuda", rtol=1e-13)
    with pytest.raises(AssertionError):
        assert_close(residue, [3.0, 0.0], "cpu", rtol=1e-13, scale=terms)
    with pytest.raises(AssertionError):  # a residue of a wrong formula's size still fails
        assert_close(np.array([3.0, 1e-6]), [3.0, 0.0], "cuda", rtol=1e-13, scale=terms)
    atol = tolerance("cuda", np.float64, scale=terms)["atol"]
    np.testing.assert_array_equal(atol, [3e-11, x * x * 1e-11])  # per element, not the max


def test_small_elements_of_a_mixed_scale_result_are_still_checked(real_cuda):
    # d prod / dx of [1e300, 3e-160, 3e-160]: exactly [9e-320, 3e140, 3e140]
    want = np.array([9e-320, 3e140, 3e140])
    assert_close(want * (1 + 1e-12), want, "cuda", rtol=1e-12)
    with pytest.raises(AssertionError):  # the first element off by 10^440
        assert_close(np.array([1e120, 3e140, 3e140]), want, "cuda", rtol=1e-12)
    with pytest.raises(AssertionError):  # and by a factor 2, even given each element's scale
        assert_close(np.array([1.8e-319, 3e140, 3e140]), want, "cuda", rtol=1e-12,
                     scale=np.abs(want))


def test_float32_subnormals_may_flush_to_zero_on_cuda_only(real_cuda):
    tiny = np.finfo(np.float32).smallest_subnormal * 7
    assert_close(np.array([0.0, 1.0], dtype=np.float32), [tiny, 1.0], "cuda", rtol=1e-7)
    with pytest.raises(AssertionError):
        assert_close(np.array([0.0, 1.0], dtype=np.float32), [tiny, 1.0], "cpu", rtol=1e-7)
    # float64 keeps its subnormals on CUDA (-ftz is single precision only)
    with pytest.raises(AssertionError):
        assert_close(np.array([0.0]), [5e-320], "cuda", rtol=1e-7)


def test_the_dtype_the_result_was_computed_in_decides(real_cuda):
    got = np.array([1 + 1e-6])  # a float32 result, compared as float64
    assert_close(got, [1.0], "cuda", dtype=np.float32)
    with pytest.raises(AssertionError):
        assert_close(got, [1.0], "cuda")
