"""Matrix products inside a CUDA-graph capture, through gpuad's own cuBLAS handle
(gpuad/backends/capture_blas.py): every layout a product meets (transposed views, row-strided
slices, broadcast batches, 1-D operands, empty inner axes, size-1 views, mixed precision) gives
NumPy's product on each replay.

On the strict CuPy stand-in the handle is the stand-in's nvmath (tests/fake_cupy/nvmath.py),
which reads and writes through raw pointers with cuBLAS's column-major arithmetic, so a wrong
leading dimension, stride or operation gives wrong numbers here. On a GPU (benchmarks/
gpu_checks.sh) the same tests run on real cuBLAS where nvmath-python is installed."""
import numpy as np
import pytest

import gpuad as ad
from gpuad.cuda_graph import CUDAGraph

GPU = pytest.mark.cuda


def _rand(shape, seed, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


#: name -> (shapes of the static inputs, the product of tensors, the same on NumPy arrays)
_CASES = {
    "2-D": ([(5, 7), (7, 3)], lambda a, b: a @ b, None),
    "transposed right (x @ W.T)": ([(5, 7), (3, 7)], lambda a, b: a @ b.T, None),
    "transposed left": ([(7, 5), (7, 3)], lambda a, b: a.T @ b, None),
    "both transposed": ([(7, 5), (3, 7)], lambda a, b: a.T @ b.T, None),
    "row-strided slice": ([(5, 16), (16, 3)], lambda a, b: a[:, :7] @ b[:7], None),
    "every other column (copied)": ([(5, 14), (7, 3)], lambda a, b: a[:, ::2] @ b, None),
    "batched @ 2-D": ([(4, 5, 7), (7, 3)], lambda a, b: a @ b, None),
    "2-D @ batched": ([(5, 7), (4, 7, 3)], lambda a, b: a @ b, None),
    "broadcast batches": ([(2, 1, 5, 7), (3, 7, 3)], lambda a, b: a @ b, None),
    "batched transposed": ([(4, 7, 5), (4, 3, 7)],
                           lambda a, b: a.transpose(0, 2, 1) @ b.transpose(0, 2, 1),
                           lambda a, b: a.transpose(0, 2, 1) @ b.transpose(0, 2, 1)),
    "vector @ matrix": ([(7,), (7, 3)], lambda a, b: a @ b, None),
    "matrix @ vector": ([(5, 7), (7,)], lambda a, b: a @ b, None),
    "vector @ vector": ([(7,), (7,)], lambda a, b: a @ b, None),
    "batched @ vector": ([(4, 5, 7), (7,)], lambda a, b: a @ b, None),
    "empty inner axis": ([(5, 0), (0, 3)], lambda a, b: a @ b, None),
    "one row": ([(1, 7), (7, 3)], lambda a, b: a @ b, None),
    "one column": ([(5, 7), (7, 1)], lambda a, b: a @ b, None),
    "a 1x1 view with odd strides": ([(1, 6), (1, 3)], lambda a, b: a[:, :1] @ b, None),
    "a column of a row": ([(1, 6), (1, 3)], lambda a, b: a[:, 0] @ b, None),
    "dot and tensordot": ([(5, 7), (7, 3)],
                          lambda a, b: ad.dot(a, b) + ad.tensordot(a, b, axes=1),
                          lambda a, b: 2 * (a @ b)),
    "linear": ([(5, 7), (3, 7)], lambda a, b: ad.nn.functional.linear(a, b),
               lambda a, b: a @ b.T),
}


@GPU
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", list(_CASES))
def test_a_captured_product_gives_numpys_on_every_replay(gpu_capture, case, dtype):
    shapes, product, reference = _CASES[case]
    reference = reference or product
    static = [ad.tensor(_rand(s, i, dtype), device="cuda") for i, s in enumerate(shapes)]
    g = CUDAGraph()
    with ad.cuda.graph(g, warmup=True):
        out = product(*static)
    del out
    with ad.cuda.graph(g):
        out = product(*static)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for seed in (10, 20):
        new = [_rand(s, seed + i, dtype) for i, s in enumerate(shapes)]
        for t, a in zip(static, new):
            t.copy_(ad.tensor(a, device="cuda"))
        g.replay()
        want = reference(*[a.astype(np.float64) for a in new])
        assert out.shape == np.shape(want) and out.dtype == dtype
        np.testing.assert_allclose(out.numpy(), want, rtol=tol, atol=tol)


@GPU
def test_mixed_precision_is_promoted_as_numpy_does(gpu_capture):
    a = ad.tensor(_rand((5, 7), 0), device="cuda")
    b = ad.tensor(_rand((7, 3), 1, np.float64), device="cuda")
    g = CUDAGraph()
    with ad.cuda.graph(g, warmup=True):
        out = a @ b
    del out
    with ad.cuda.graph(g):
        out = a @ b
    g.replay()
    assert out.dtype == np.float64
    np.testing.assert_allclose(out.numpy(), _rand((5, 7), 0).astype(np.float64)
                               @ _rand((7, 3), 1, np.float64), rtol=1e-12)


def test_a_product_outside_a_capture_is_cupys(monkeypatch):
    """Eager products never touch gpuad's handle (none is made)."""
    from fake_cupy import installed

    from gpuad.backends import capture_blas

    with installed(monkeypatch):
        a = ad.tensor(_rand((5, 7), 0), device="cuda")
        out = a @ a.T
        assert not capture_blas._handles and not capture_blas.capturing()
        np.testing.assert_allclose(out.numpy(), _rand((5, 7), 0) @ _rand((5, 7), 0).T,
                                   rtol=1e-5)
