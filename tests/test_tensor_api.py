"""SPEC section 2: creating tensors, dtypes and promotion, attributes, conversions, devices.

References are NumPy (values, dtypes, NEP 50 promotion) and, where noted, PyTorch's text form.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

import gpuad as ad

# These tests are about the CPU path: pin the default device (cuda:0 on a GPU machine).
pytestmark = pytest.mark.usefixtures("cpu_default")


def _np(t):
    """The data of a CPU tensor as an ndarray (independently of ``numpy()``)."""
    return np.asarray(t.array)


# ---- creation ------------------------------------------------------------------------------

class TestCreation:
    def test_tensor_from_nested_list(self):
        t = ad.tensor([[1.0, 2.0], [3.0, 4.0]])
        assert isinstance(t, ad.Tensor)
        assert t.shape == (2, 2)
        assert t.dtype == np.float32
        np.testing.assert_array_equal(_np(t), np.array([[1, 2], [3, 4]], dtype=np.float32))

    def test_tensor_explicit_dtype(self):
        t = ad.tensor([1, 2, 3], dtype=ad.float64)
        assert t.dtype == np.float64
        np.testing.assert_array_equal(_np(t), [1.0, 2.0, 3.0])
        t16 = ad.tensor([1.5], dtype=ad.float16)
        assert t16.dtype == np.float16

    def test_tensor_copies_numpy_input(self):
        a = np.arange(4.0)
        t = ad.tensor(a)
        a[0] = 100.0
        assert t.tolist() == [0.0, 1.0, 2.0, 3.0]

    def test_tensor_from_tensor_copies(self):
        a = ad.tensor([1.0, 2.0])
        b = ad.tensor(a)
        b.array[0] = 9.0
        assert a.tolist() == [1.0, 2.0]

    def test_tensor_requires_grad_flag(self):
        t = ad.tensor([1.0], requires_grad=True)
        assert t.requires_grad and t.is_leaf and t.grad is None and t.grad_fn is None

    def test_scalar_tensor_is_0d(self):
        t = ad.tensor(3.5)
        assert t.shape == () and t.ndim == 0 and t.size == 1
        assert t.dtype == np.float32
        assert t.item() == 3.5

    @pytest.mark.parametrize("fn,value", [(ad.zeros, 0.0), (ad.ones, 1.0)])
    def test_zeros_ones(self, fn, value):
        for t in (fn(2, 3), fn((2, 3))):
            assert t.shape == (2, 3)
            assert t.dtype == np.float32
            np.testing.assert_array_equal(_np(t), np.full((2, 3), value, np.float32))
        t = fn(4, dtype=ad.int32)
        assert t.dtype == np.int32 and t.shape == (4,)

    def test_empty(self):
        t = ad.empty(3, 2)
        assert t.shape == (3, 2) and t.dtype == np.float32
        assert ad.empty((5,), dtype=ad.float64).dtype == np.float64

    def test_full(self):
        t = ad.full((2, 2), 7.0)
        assert t.dtype == np.float32
        np.testing.assert_array_equal(_np(t), np.full((2, 2), 7.0, np.float32))
        ti = ad.full((3,), 2)
        assert ti.dtype == np.int64
        assert ti.tolist() == [2, 2, 2]
        t64 = ad.full((1,), 0.1, dtype=ad.float64)
        assert t64.dtype == np.float64 and t64.item() == 0.1

    def test_fill_is_tensorflow_full(self):
        t = ad.fill([2, 3], 4.0)
        assert t.shape == (2, 3)
        np.testing.assert_array_equal(_np(t), np.full((2, 3), 4.0))

    def test_arange(self):
        t = ad.arange(5)
        assert t.dtype == np.int64
        assert t.tolist() == [0, 1, 2, 3, 4]
        t = ad.arange(1, 7, 2)
        assert t.tolist() == [1, 3, 5]
        tf = ad.arange(0.0, 1.0, 0.25)
        assert tf.dtype == np.float32
        np.testing.assert_allclose(_np(tf), [0.0, 0.25, 0.5, 0.75])
        assert ad.arange(3, dtype=ad.float64).dtype == np.float64

    def test_linspace(self):
        t = ad.linspace(0.0, 1.0, 5)
        assert t.dtype == np.float32
        np.testing.assert_allclose(_np(t), np.linspace(0, 1, 5))
        assert ad.linspace(0, 1, 3, dtype=ad.float64).dtype == np.float64

    def test_eye(self):
        np.testing.assert_array_equal(_np(ad.eye(3)), np.eye(3, dtype=np.float32))
        np.testing.assert_array_equal(_np(ad.eye(2, 4)), np.eye(2, 4))
        assert ad.eye(3).dtype == np.float32

    def test_like_functions(self):
        base = ad.tensor(np.arange(6, dtype=np.float64).reshape(2, 3))
        z, o, f, e = (ad.zeros_like(base), ad.ones_like(base), ad.full_like(base, 2.5),
                      ad.empty_like(base))
        for t in (z, o, f, e):
            assert t.shape == (2, 3) and t.dtype == np.float64 and t.device == "cpu"
        np.testing.assert_array_equal(_np(z), np.zeros((2, 3)))
        np.testing.assert_array_equal(_np(o), np.ones((2, 3)))
        np.testing.assert_array_equal(_np(f), np.full((2, 3), 2.5))
        assert ad.zeros_like(base, dtype=ad.float32).dtype == np.float32

    def test_creation_requires_grad(self):
        for t in (ad.zeros(2, requires_grad=True), ad.ones(2, requires_grad=True),
                  ad.full((2,), 1.0, requires_grad=True), ad.randn(2, requires_grad=True),
                  ad.linspace(0, 1, 3, requires_grad=True)):
            assert t.requires_grad and t.is_leaf

    def test_rand_randn_reproducible(self):
        ad.manual_seed(1234)
        a, b = ad.rand(4, 5), ad.randn(100)
        ad.manual_seed(1234)
        a2, b2 = ad.rand(4, 5), ad.randn(100)
        np.testing.assert_array_equal(_np(a), _np(a2))
        np.testing.assert_array_equal(_np(b), _np(b2))
        ad.manual_seed(4321)
        assert not np.array_equal(_np(ad.rand(4, 5)), _np(a))

    def test_rand_randn_distribution(self):
        ad.manual_seed(0)
        u = ad.rand(10000)
        n = ad.randn(100, 100)
        assert u.dtype == np.float32 and n.dtype == np.float32
        assert n.shape == (100, 100)
        ua = _np(u)
        assert ua.min() >= 0.0 and ua.max() < 1.0
        assert abs(ua.mean() - 0.5) < 0.02
        na = _np(n)
        assert abs(na.mean()) < 0.05 and abs(na.std() - 1.0) < 0.05
        assert ad.randn(3, dtype=ad.float64).dtype == np.float64

    def test_from_numpy_shares_memory(self):
        a = np.arange(6.0).reshape(2, 3)
        t = ad.from_numpy(a)
        assert t.dtype == np.float64 and t.shape == (2, 3)
        a[0, 0] = 42.0
        assert t.tolist()[0][0] == 42.0
        t.array[1, 2] = -1.0
        assert a[1, 2] == -1.0
        assert np.shares_memory(t.array, a)

    def test_from_numpy_is_differentiable(self):
        x = ad.from_numpy(np.array([1.0, 2.0])).requires_grad_()
        (x * x).sum().backward()
        np.testing.assert_array_equal(_np(x.grad), [2.0, 4.0])

    def test_from_numpy_first_thing_in_a_process(self):
        code = (
            "import numpy as np\n"
            "import gpuad as ad\n"
            "t = ad.from_numpy(np.array([1.0, 2.0]))\n"
            "print((t * 2.0).tolist(), t.sum().item())\n"
        )
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ, GPUAD_DEVICE="cpu")
        r = subprocess.run([sys.executable, "-c", code], cwd=root, env=env,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr[-400:]
        assert r.stdout.strip() == "[2.0, 4.0] 3.0"

    def test_from_numpy_rejects_non_arrays(self):
        with pytest.raises(TypeError):
            ad.from_numpy([1.0, 2.0])

    def test_from_dlpack_numpy(self):
        a = np.arange(4, dtype=np.float32)
        t = ad.from_dlpack(a)
        assert t.device == "cpu" and t.dtype == np.float32
        np.testing.assert_array_equal(_np(t), a)
        assert np.shares_memory(t.array, a)

    def test_from_dlpack_torch(self):
        torch = pytest.importorskip("torch")
        src = torch.arange(5, dtype=torch.float64)
        t = ad.from_dlpack(src)
        assert t.dtype == np.float64 and t.device == "cpu"
        src[0] = 7.0
        assert t.tolist() == [7.0, 1.0, 2.0, 3.0, 4.0]

    def test_dlpack_export_roundtrip(self):
        t = ad.tensor([1.0, 2.0, 3.0])
        back = np.from_dlpack(t)
        np.testing.assert_array_equal(back, [1.0, 2.0, 3.0])
        assert np.shares_memory(back, t.array)


# ---- default dtypes and promotion ----------------------------------------------------------

class TestDtypes:
    def test_dtype_objects_are_numpy_dtypes(self):
        assert ad.float16 == np.float16 and ad.float32 == np.float32
        assert ad.float64 == np.float64 and ad.int32 == np.int32
        assert ad.int64 == np.int64 and ad.bool_ == np.bool_

    @pytest.mark.parametrize("data,expected", [
        (1.0, np.float32), ([1.0, 2.5], np.float32), ([[1.0], [2.0]], np.float32),
        (3, np.int64), ([1, 2], np.int64), ([1, 2.5], np.float32), (True, np.bool_),
        ([True, False], np.bool_),
    ])
    def test_python_defaults(self, data, expected):
        assert ad.tensor(data).dtype == expected

    @pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int32, np.int64,
                                       np.bool_, np.uint8])
    def test_numpy_arrays_keep_dtype(self, dtype):
        a = np.zeros(3, dtype=dtype)
        assert ad.tensor(a).dtype == dtype

    def test_numpy_scalar_keeps_dtype(self):
        assert ad.tensor(np.float64(1.5)).dtype == np.float64
        assert ad.tensor(np.int32(2)).dtype == np.int32

    @pytest.mark.parametrize("tdtype", [np.float16, np.float32, np.float64, np.int32, np.int64])
    @pytest.mark.parametrize("scalar", [2, 0.5, True])
    @pytest.mark.parametrize("op", ["add", "mul", "sub", "rsub", "rmul"])
    def test_weak_python_scalars_nep50(self, tdtype, scalar, op):
        a = np.array([1, 2, 3], dtype=tdtype)
        t = ad.tensor(a)
        fns = {"add": lambda x: x + scalar, "mul": lambda x: x * scalar,
               "sub": lambda x: x - scalar, "rsub": lambda x: scalar - x,
               "rmul": lambda x: scalar * x}
        expected = fns[op](a)
        got = fns[op](t)
        assert isinstance(got, ad.Tensor)
        assert got.dtype == expected.dtype, (tdtype, scalar, op)
        np.testing.assert_allclose(_np(got), expected)

    def test_spec_examples(self):
        f32 = ad.tensor([1.0, 2.0])
        assert (f32 * 0.5).dtype == np.float32
        f64 = ad.tensor(np.array([1.0, 2.0]))
        assert (f32 + f64).dtype == np.float64
        assert (f64 + f32).dtype == np.float64
        i64 = ad.tensor([1, 2])
        assert (i64 * 1.5).dtype == np.float64
        np.testing.assert_array_equal(_np(i64 * 1.5), [1.5, 3.0])
        assert (i64 / 2).dtype == np.float64
        assert (ad.tensor(np.array([1], np.int32)) + 1).dtype == np.int32

    @pytest.mark.parametrize("a_dt,b_dt", [
        (np.float16, np.float32), (np.float32, np.float64), (np.int32, np.int64),
        (np.int32, np.float32), (np.int64, np.float32), (np.bool_, np.int32),
        (np.float16, np.int64),
    ])
    def test_tensor_tensor_promotion_matches_numpy(self, a_dt, b_dt):
        a = np.array([1, 2], dtype=a_dt)
        b = np.array([3, 4], dtype=b_dt)
        for fn in (lambda x, y: x + y, lambda x, y: x * y, lambda x, y: x / y):
            got = fn(ad.tensor(a), ad.tensor(b))
            exp = fn(a, b)
            assert got.dtype == exp.dtype
            np.testing.assert_allclose(_np(got), exp, rtol=1e-3)

    def test_numpy_array_operand_is_not_weak(self):
        f32 = ad.tensor([1.0, 2.0])
        out = f32 + np.array([1.0, 1.0])  # float64 array: strongly typed, as in NumPy
        assert out.dtype == np.float64
        out = f32 * np.float64(2.0)  # NumPy scalars are strongly typed under NEP 50
        assert out.dtype == np.float64

    def test_numpy_scalar_on_left_is_strong(self):
        f32 = ad.tensor([1.0, 2.0])
        r = np.float64(2.0) * f32
        assert isinstance(r, ad.Tensor) and r.dtype == np.float64
        r = np.float32(2.0) * f32
        assert isinstance(r, ad.Tensor) and r.dtype == np.float32
        np.testing.assert_array_equal(_np(r), [2.0, 4.0])

    def test_comparisons_with_numpy_on_left(self):
        a = np.array([1.0, 5.0], dtype=np.float32)
        t = ad.tensor([3.0, 4.0])
        for got, exp in ((a < t, [True, False]), (a >= t, [False, True]),
                         (a == t, [False, False]), (t > a, [True, False])):
            assert isinstance(got, ad.Tensor), type(got)
            assert got.dtype == np.bool_
            assert got.tolist() == exp

    def test_zero_dim_results_are_arrays(self):
        x = ad.tensor([1.0, 2.0, 3.0])
        m = ad.tensor(np.ones((2, 3)))
        for r in (x.sum(), x.mean(), x.max(), x.min(), x.prod(), x.var(), x.std(), x.norm(),
                  x.logsumexp(), x.argmax(), x[0], x @ x, ad.dot(x, x), x.sum() * 2.0,
                  ad.tensor(2.0) + 1.0, (x * x).sum().exp(), m.sum(axis=(0, 1)),
                  ad.einsum("ij,ij->", m, m), ad.tensordot(m, m, 2)):
            assert isinstance(r, ad.Tensor)
            assert r.shape == ()
            assert isinstance(r.array, np.ndarray), type(r.array)
        assert float(x.sum().array) == 6.0

    def test_reflected_ops_with_numpy_on_left(self):
        a = np.array([1.0, 2.0], dtype=np.float32)
        t = ad.tensor([3.0, 4.0], requires_grad=True)
        for expr, expected in ((a * t, a * np.array([3, 4])), (a + t, a + np.array([3, 4])),
                               (a - t, a - np.array([3, 4])), (a / t, a / np.array([3, 4]))):
            assert isinstance(expr, ad.Tensor), type(expr)
            assert expr.requires_grad
            np.testing.assert_allclose(_np(expr), expected, rtol=1e-6)
        m = np.eye(2, dtype=np.float32)
        r = m @ t
        assert isinstance(r, ad.Tensor)
        np.testing.assert_allclose(_np(r), [3.0, 4.0])
        (a * t).sum().backward()
        np.testing.assert_allclose(_np(t.grad), a)

    def test_reflected_ops_with_python_scalars(self):
        t = ad.tensor([2.0, 4.0])
        np.testing.assert_allclose(_np(1.0 - t), [-1.0, -3.0])
        np.testing.assert_allclose(_np(8.0 / t), [4.0, 2.0])
        np.testing.assert_allclose(_np(2.0 ** t), [4.0, 16.0])


# ---- attributes -----------------------------------------------------------------------------

class TestAttributes:
    def test_basic_attributes(self):
        a = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
        t = ad.tensor(a)
        assert t.shape == (2, 3, 4)
        assert t.ndim == 3
        assert t.size == 24
        assert t.dtype == np.float64
        assert t.device == "cpu"
        assert str(t.device) == "cpu"
        assert t.requires_grad is False
        assert t.is_leaf
        assert t.grad is None and t.grad_fn is None

    def test_T(self):
        a = np.arange(6.0).reshape(2, 3)
        t = ad.tensor(a)
        assert t.T.shape == (3, 2)
        np.testing.assert_array_equal(_np(t.T), a.T)

    def test_T_reverses_all_axes(self):
        a = np.arange(24.0).reshape(2, 3, 4)
        np.testing.assert_array_equal(_np(ad.tensor(a).T), a.T)

    def test_requires_grad_setter(self):
        t = ad.tensor([1.0])
        t.requires_grad = True
        assert t.requires_grad
        t.requires_grad_(False)
        assert not t.requires_grad

    def test_array_is_backend_array_without_copy(self):
        t = ad.tensor([1.0, 2.0])
        assert isinstance(t.array, np.ndarray)
        assert t.array is t.array
        t.array[0] = 5.0
        assert t.tolist() == [5.0, 2.0]

    def test_grad_fn_and_is_leaf(self):
        x = ad.tensor([1.0, 2.0], requires_grad=True)
        y = x * 2.0
        assert not y.is_leaf
        assert y.grad_fn is not None
        assert y.requires_grad
        c = ad.tensor([1.0]) * 2.0
        assert c.is_leaf and c.grad_fn is None and not c.requires_grad

    def test_len_and_iter(self):
        t = ad.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
        assert len(t) == 3
        rows = list(t)
        assert len(rows) == 3 and rows[2].tolist() == [5.0, 6.0]


# ---- conversions ------------------------------------------------------------------------------

class TestConversions:
    def test_numpy_is_a_copy(self):
        t = ad.tensor([1.0, 2.0])
        n = t.numpy()
        assert isinstance(n, np.ndarray)
        n[0] = 100.0
        assert t.tolist() == [1.0, 2.0]
        assert not np.shares_memory(n, t.array)

    def test_numpy_on_requires_grad_tensor(self):
        x = ad.tensor([1.0, 2.0], requires_grad=True)
        y = x * 3.0
        np.testing.assert_array_equal(x.numpy(), [1.0, 2.0])
        np.testing.assert_array_equal(y.numpy(), [3.0, 6.0])
        assert y.numpy().dtype == np.float32

    def test_numpy_of_0d(self):
        n = ad.tensor([1.0, 2.0]).sum().numpy()
        assert isinstance(n, np.ndarray) and n.shape == () and n == 3.0

    def test_item(self):
        assert ad.tensor([2.5]).item() == 2.5
        assert isinstance(ad.tensor(3).item(), int)
        assert isinstance(ad.tensor(3.0).item(), float)
        assert ad.tensor([[7]]).item() == 7
        x = ad.tensor([1.0, 2.0], requires_grad=True)
        assert (x * x).sum().item() == 5.0
        with pytest.raises((RuntimeError, ValueError)):
            ad.tensor([1.0, 2.0]).item()

    def test_tolist(self):
        assert ad.tensor([[1, 2], [3, 4]]).tolist() == [[1, 2], [3, 4]]
        assert ad.tensor(2.0).tolist() == 2.0
        out = ad.tensor([1.5, 2.5]).tolist()
        assert out == [1.5, 2.5] and all(type(v) is float for v in out)

    def test_to_and_cpu(self):
        t = ad.tensor([1.0, 2.0])
        c = t.cpu()
        assert c.device == "cpu"
        np.testing.assert_array_equal(_np(c), [1.0, 2.0])
        d = t.to(dtype=ad.float64)
        assert d.dtype == np.float64 and d.device == "cpu"
        assert t.dtype == np.float32
        e = t.to("cpu", ad.float16)
        assert e.dtype == np.float16
        assert t.to("cpu").device == "cpu"
        assert t.to(ad.device("cpu")).device == "cpu"

    def test_to_dtype_is_differentiable(self):
        x = ad.tensor([1.0, 2.0], requires_grad=True)
        y = x.to(dtype=ad.float64)
        (y * y).sum().backward()
        assert x.grad.dtype == np.float32
        np.testing.assert_allclose(_np(x.grad), [2.0, 4.0])

    def test_astype(self):
        t = ad.tensor([1.7, -2.2])
        i = t.astype(ad.int32)
        assert i.dtype == np.int32
        np.testing.assert_array_equal(_np(i), np.array([1.7, -2.2], np.float32).astype(np.int32))
        f = ad.tensor([1, 2]).astype("float64")
        assert f.dtype == np.float64
        x = ad.tensor([1.0, 2.0], dtype=ad.float64, requires_grad=True)
        y = x.astype(ad.float32)
        assert y.requires_grad and y.dtype == np.float32
        (y * 2.0).sum().backward()
        assert x.grad.dtype == np.float64
        np.testing.assert_array_equal(_np(x.grad), [2.0, 2.0])

    def test_detach(self):
        x = ad.tensor([1.0, 2.0], requires_grad=True)
        y = x * 2.0
        d = y.detach()
        assert not d.requires_grad and d.is_leaf and d.grad_fn is None
        np.testing.assert_array_equal(_np(d), [2.0, 4.0])
        assert np.shares_memory(d.array, y.array)
        z = (d * x).sum()
        z.backward()
        np.testing.assert_array_equal(_np(x.grad), [2.0, 4.0])

    def test_array_protocol_cpu(self):
        t = ad.tensor([[1.0, 2.0], [3.0, 4.0]])
        a = np.asarray(t)
        assert isinstance(a, np.ndarray)
        np.testing.assert_array_equal(a, [[1.0, 2.0], [3.0, 4.0]])
        assert np.asarray(t, dtype=np.float64).dtype == np.float64
        assert np.array(t).dtype == np.float32
        c = np.array(t, copy=True)
        c[0, 0] = 9
        assert t.tolist()[0][0] == 1.0

    def test_array_protocol_on_requires_grad(self):
        x = ad.tensor([1.0, 2.0], requires_grad=True)
        np.testing.assert_array_equal(np.asarray(x), [1.0, 2.0])

    def test_float_int_bool(self):
        assert float(ad.tensor(2.5)) == 2.5
        assert int(ad.tensor(3)) == 3
        assert bool(ad.tensor(1.0)) is True
        with pytest.raises((RuntimeError, ValueError)):
            bool(ad.tensor([1.0, 2.0]))


# ---- repr -------------------------------------------------------------------------------------

class TestRepr:
    def test_plain(self):
        r = repr(ad.tensor([1.0, 2.0]))
        assert r.startswith("tensor(") and r.endswith(")")
        assert "1." in r and "2." in r
        assert "requires_grad" not in r and "grad_fn" not in r
        assert "device" not in r  # the CPU is not spelled out, as in PyTorch

    def test_requires_grad(self):
        r = repr(ad.tensor([1.0, 2.0], requires_grad=True))
        assert r.startswith("tensor([1., 2.]")
        assert "requires_grad=True" in r

    def test_grad_fn(self):
        x = ad.tensor([2.0, 3.0], requires_grad=True)
        r = repr(x.sum())
        assert r.startswith("tensor(5.")
        assert "grad_fn=<" in r and "Backward" in r

    def test_non_default_dtype_shown(self):
        assert "float64" in repr(ad.tensor(np.array([1.0, 2.0])))
        assert "int32" in repr(ad.tensor(np.array([1, 2], dtype=np.int32)))
        assert "dtype" not in repr(ad.tensor([1, 2]))

    def test_str(self):
        assert "1." in str(ad.tensor([1.0]))


# ---- devices ----------------------------------------------------------------------------------

class TestDeviceStrings:
    def test_cpu_compares_equal(self):
        t = ad.tensor([1.0])
        assert t.device == "cpu"
        assert t.device == ad.device("cpu")
        assert not (t.device != "cpu")
        assert t.device != "cuda:0"

    def test_device_objects(self):
        assert ad.device("cuda:1") == "cuda:1"
        assert ad.device("cuda") == "cuda:0"
        assert ad.device("cuda:1") != ad.device("cuda:0")
        assert str(ad.device("cuda:2")) == "cuda:2"
        assert ad.device("cpu") == "cpu"
        assert ad.device(ad.device("cpu")) == "cpu"
        assert hash(ad.device("cpu")) == hash(ad.device("cpu"))
        assert ad.device("cuda:1").type == "cuda" and ad.device("cuda:1").index == 1
        assert ad.device("cpu").type == "cpu"

    @pytest.mark.parametrize("bad", ["tpu", "cuda:x", "cpu:0:1", "", "cuda:-1", "gpu0"])
    def test_invalid_device_string(self, bad):
        with pytest.raises(ValueError):
            ad.device(bad)

    def test_invalid_device_in_creation(self):
        with pytest.raises(ValueError):
            ad.tensor([1.0], device="tpu")
        with pytest.raises(ValueError):
            ad.zeros(2, device="metal")

    def test_explicit_cpu(self):
        for t in (ad.tensor([1.0], device="cpu"), ad.zeros(2, device="cpu"),
                  ad.arange(3, device="cpu"), ad.rand(2, device="cpu"),
                  ad.eye(2, device=ad.device("cpu"))):
            assert t.device == "cpu"

    def test_auto_default_device(self):
        ad.set_default_device("auto")
        expected = "cuda:0" if ad.cuda.is_available() else "cpu"
        assert ad.get_default_device() == expected
        assert ad.tensor([1.0]).device == expected
        ad.set_default_device("cpu")
        assert ad.tensor([1.0]).device == "cpu"
