"""Creating tensors: from data, filled, ranges, random (seeded by ``manual_seed``), and from
other libraries' arrays (NumPy, DLPack)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .backends import manual_seed as seed_backends
from .convert import shape_arg
from .devices import Device, resolve
from .devices import device as _device
from .dtypes import as_dtype, check_numeric, float32, infer_dtype, value_dtype
from .tensor import Tensor

if TYPE_CHECKING:  # (gpuad imports its aliases for the checker only)
    import numpy as np

    from ._typing import Array, DeviceLike, DTypeLike, Scalar, ShapeLike, TensorLike


def _finish(a: Array, dev: Device, requires_grad: bool) -> Tensor:
    t = Tensor(a, dev)
    if requires_grad:
        t.requires_grad_(True)
    return t


def _as_cupy(data: Any) -> Array:
    """Any CUDA array (CuPy, PyTorch, Numba, ...) as a CuPy array on the same memory."""
    import cupy

    return cupy.asarray(data)


def _source_device(data: object) -> Device | None:
    """The device an existing array lives on."""
    if hasattr(data, "__cuda_array_interface__"):
        return _device(f"cuda:{_as_cupy(data).device.id}")
    return None


def tensor(data: TensorLike, dtype: DTypeLike = None, device: DeviceLike | None = None,
           requires_grad: bool = False) -> Tensor:
    """A new tensor holding a copy of ``data`` (nested lists, scalars, arrays or a Tensor).

    Python floats default to float32 and ints int64; arrays keep their dtype.

    >>> ad.tensor([[1, 2], [3, 4]])
    tensor([[1, 2],
            [3, 4]])
    >>> ad.tensor([1.0, 2.0], requires_grad=True)
    tensor([1., 2.], requires_grad=True)
    >>> ad.tensor(np.array([1, 2], dtype=np.int8))
    tensor([1, 2], dtype=int8)
    """
    if isinstance(data, Tensor):
        dtype = as_dtype(dtype, "tensor") or data.dtype
        dev = resolve(device) if device is not None else data._dev
        src = data._a if dev is data._dev else data._dev.backend.to_numpy(data._a)
        return _finish(dev.backend.copy(dev.backend.asarray(src, dtype=dtype)), dev,
                       requires_grad)
    dev = resolve(device if device is not None else _source_device(data))
    if hasattr(data, "__cuda_array_interface__"):
        data = _as_cupy(data)
    dtype = as_dtype(dtype, "tensor")
    try:
        if dtype is None:
            dtype = (data.dtype  # type: ignore[union-attr]  # a CUDA array
                     if hasattr(data, "__cuda_array_interface__") else infer_dtype(data))
        if dev.type == "cpu" and hasattr(data, "__cuda_array_interface__"):
            data = data.get()  # type: ignore[union-attr]  # a CUDA array, to the host
    except (TypeError, ValueError, OverflowError) as exc:
        raise _refused(data, exc) from None
    check_numeric(dtype, "tensor", lambda: f"from {_describe(data)}")
    try:
        array = dev.backend.copy(dev.backend.asarray(data, dtype=dtype))
    except (TypeError, ValueError, OverflowError) as exc:
        raise _refused(data, exc) from None
    return _finish(array, dev, requires_grad)


def _refused(data: object, exc: Exception) -> TypeError:
    return TypeError(
        f"gpuad.tensor: cannot make a tensor from {_describe(data)}: {exc}. Pass numbers "
        "(bool, int, float), nested lists of one shape, or an array"
    )


def _describe(data: object) -> str:
    text = repr(data)
    return f"{type(data).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"


def as_tensor(data: TensorLike,
              dtype: DTypeLike = None, device: DeviceLike | None = None) -> Tensor:
    """``data`` as a tensor, without a copy when it already is one of the right kind.

    >>> t = ad.tensor([1.0, 2.0])
    >>> ad.as_tensor(t) is t
    True
    >>> ad.as_tensor([1, 2], dtype=ad.float64)
    tensor([1., 2.], dtype=float64)
    """
    if isinstance(data, Tensor) and device is None and dtype is None:
        return data
    return tensor(data, dtype=dtype, device=device)


def from_numpy(array: np.ndarray) -> Tensor:
    """A CPU tensor sharing memory with the NumPy array ``array``.

    >>> a = np.array([1.0, 2.0])
    >>> t = ad.from_numpy(a)
    >>> a[0] = 5.0  # the tensor sees the change
    >>> t
    tensor([5., 2.], dtype=float64)
    """
    import numpy as np

    if not isinstance(array, np.ndarray):
        raise TypeError(f"gpuad.from_numpy expects a numpy.ndarray, got {type(array).__name__}")
    check_numeric(array.dtype, "from_numpy", "from this array")
    return Tensor(array, resolve("cpu"))


def from_dlpack(obj: Any) -> Tensor:
    """A tensor sharing memory with any DLPack producer (CuPy, PyTorch, JAX, NumPy).

    >>> ad.from_dlpack(np.arange(3.0))
    tensor([0., 1., 2.], dtype=float64)
    """
    kind, index = obj.__dlpack_device__() if hasattr(obj, "__dlpack_device__") else (1, 0)
    if kind not in (1, 2, 13):  # DLPack's CPU, CUDA, CUDA managed
        raise TypeError(
            f"gpuad.from_dlpack: DLPack device type {kind} is not supported; gpuad takes CPU "
            "(1) and CUDA (2, 13) memory"
        )
    dev = resolve("cpu" if kind == 1 else f"cuda:{index}")
    return Tensor(dev.backend.from_dlpack(obj), dev)


def _filled(method: str, shape: tuple[ShapeLike, ...], dtype: DTypeLike,
            device: DeviceLike | None, requires_grad: bool, *args: Scalar) -> Tensor:
    dev = resolve(device)
    dtype = as_dtype(dtype, method) or float32
    a = getattr(dev.backend, method)(shape_arg(shape), *args, dtype=dtype)
    return _finish(a, dev, requires_grad)


def zeros(*shape: ShapeLike, dtype: DTypeLike = None, device: DeviceLike | None = None,
          requires_grad: bool = False) -> Tensor:
    """A tensor of zeros (float32 unless ``dtype`` says otherwise).

    >>> ad.zeros(2, 3)
    tensor([[0., 0., 0.],
            [0., 0., 0.]])
    """
    return _filled("zeros", shape, dtype, device, requires_grad)


def ones(*shape: ShapeLike, dtype: DTypeLike = None, device: DeviceLike | None = None,
         requires_grad: bool = False) -> Tensor:
    """A tensor of ones (float32 unless ``dtype`` says otherwise).

    >>> ad.ones(2, dtype=ad.int32)
    tensor([1, 1], dtype=int32)
    """
    return _filled("ones", shape, dtype, device, requires_grad)


def empty(*shape: ShapeLike, dtype: DTypeLike = None, device: DeviceLike | None = None,
          requires_grad: bool = False) -> Tensor:
    """A tensor whose values are not set (float32 unless ``dtype`` says otherwise).

    >>> t = ad.empty(2, 3)
    >>> t.shape, t.dtype
    ((2, 3), dtype('float32'))
    """
    return _filled("empty", shape, dtype, device, requires_grad)


def full(shape: ShapeLike, fill_value: Scalar,
         dtype: DTypeLike = None, device: DeviceLike | None = None,
         requires_grad: bool = False) -> Tensor:
    """A tensor of ``shape`` with every element ``fill_value`` (whose dtype it takes).

    >>> ad.full((2, 2), 0.5)
    tensor([[0.5000, 0.5000],
            [0.5000, 0.5000]])
    >>> ad.full(3, 7)
    tensor([7, 7, 7])
    """
    inferred = value_dtype(fill_value, "full")
    dtype = as_dtype(dtype, "full") or inferred
    dev = resolve(device)
    a = dev.backend.full(shape_arg((shape,)), fill_value, dtype=dtype)
    return _finish(a, dev, requires_grad)


def fill(dims: ShapeLike | Tensor, value: Scalar,
         dtype: DTypeLike = None, device: DeviceLike | None = None) -> Tensor:
    """TensorFlow's spelling of :func:`full`; ``dims`` may also be a tensor of ints.

    >>> ad.fill(ad.tensor([2, 2]), 1.0)
    tensor([[1., 1.],
            [1., 1.]])
    """
    shape = dims.tolist() if isinstance(dims, Tensor) else dims
    value_dtype(value, "fill")
    return full(shape, value, dtype=dtype, device=device)


def _like(t: TensorLike, method: str, dtype: DTypeLike, device: DeviceLike | None,
          requires_grad: bool, *args: Scalar) -> Tensor:
    if not isinstance(t, Tensor):
        t = tensor(t, device=device)
    dev = resolve(device) if device is not None else t._dev
    dtype = as_dtype(dtype, f"{method}_like") or t.dtype
    a = getattr(dev.backend, method)(t.shape, *args, dtype=dtype)
    return _finish(a, dev, requires_grad)


def zeros_like(t: TensorLike, dtype: DTypeLike = None, device: DeviceLike | None = None,
               requires_grad: bool = False) -> Tensor:
    """Zeros of ``t``'s shape, and of its dtype and device unless given.

    >>> ad.zeros_like(ad.tensor([[1, 2], [3, 4]]))
    tensor([[0, 0],
            [0, 0]])
    """
    return _like(t, "zeros", dtype, device, requires_grad)


def ones_like(t: TensorLike, dtype: DTypeLike = None, device: DeviceLike | None = None,
              requires_grad: bool = False) -> Tensor:
    """Ones of ``t``'s shape, and of its dtype and device unless given.

    >>> ad.ones_like(ad.tensor([1, 2, 3]), dtype=ad.float32)
    tensor([1., 1., 1.])
    """
    return _like(t, "ones", dtype, device, requires_grad)


def full_like(t: TensorLike, fill_value: Scalar,
              dtype: DTypeLike = None, device: DeviceLike | None = None,
              requires_grad: bool = False) -> Tensor:
    """``fill_value`` in ``t``'s shape, and of its dtype and device unless given.

    >>> ad.full_like(ad.tensor([1.0, 2.0]), 9)
    tensor([9., 9.])
    """
    value_dtype(fill_value, "full_like")
    return _like(t, "full", dtype, device, requires_grad, fill_value)


def empty_like(t: TensorLike, dtype: DTypeLike = None, device: DeviceLike | None = None,
               requires_grad: bool = False) -> Tensor:
    """Unset values in ``t``'s shape, and of its dtype and device unless given.

    >>> t = ad.empty_like(ad.tensor([[1, 2], [3, 4]]))
    >>> t.shape, t.dtype
    ((2, 2), dtype('int64'))
    """
    return _like(t, "empty", dtype, device, requires_grad)


def arange(start: Scalar, stop: Scalar | None = None, step: Scalar = 1,
           dtype: DTypeLike = None, device: DeviceLike | None = None,
           requires_grad: bool = False) -> Tensor:
    """Evenly spaced values in [start, stop); ints give int64, floats float32.

    >>> ad.arange(5)
    tensor([0, 1, 2, 3, 4])
    >>> ad.arange(0, 1, 0.25)
    tensor([0.0000, 0.2500, 0.5000, 0.7500])
    """
    if stop is None:
        start, stop = 0, start
    for bound in (start, stop, step):
        if value_dtype(bound, "arange").kind not in "biuf":
            raise TypeError(f"gpuad.arange: start, stop and step are real numbers, got {bound!r}")
    dtype = as_dtype(dtype, "arange") or infer_dtype([start, stop, step])
    dev = resolve(device)
    return _finish(dev.backend.arange(start, stop, step, dtype=dtype), dev, requires_grad)


def linspace(start: Scalar, stop: Scalar, num: int = 50,
             dtype: DTypeLike = None, device: DeviceLike | None = None,
             requires_grad: bool = False) -> Tensor:
    """``num`` evenly spaced values from ``start`` to ``stop``, both included (float32).

    >>> ad.linspace(0, 1, 5)
    tensor([0.0000, 0.2500, 0.5000, 0.7500, 1.0000])
    """
    value_dtype(start, "linspace")
    value_dtype(stop, "linspace")
    dev = resolve(device)
    a = dev.backend.linspace(start, stop, num, dtype=as_dtype(dtype, "linspace") or float32)
    return _finish(a, dev, requires_grad)


def eye(n: int, m: int | None = None, dtype: DTypeLike = None, device: DeviceLike | None = None,
        requires_grad: bool = False) -> Tensor:
    """The ``n`` by ``m`` (default ``n``) matrix with ones on the diagonal, zeros elsewhere.

    >>> ad.eye(2, 3)
    tensor([[1., 0., 0.],
            [0., 1., 0.]])
    """
    dev = resolve(device)
    dtype = as_dtype(dtype, "eye") or float32
    return _finish(dev.backend.eye(n, m, dtype=dtype), dev, requires_grad)


def manual_seed(seed: int) -> None:
    """Seed the random generators of every device, so ``rand``/``randn`` repeat.

    >>> ad.manual_seed(42)
    >>> a = ad.randn(3)
    >>> ad.manual_seed(42)
    >>> bool((ad.randn(3) == a).all())
    True
    """
    seed_backends(int(seed))


def _random(method: str, shape: tuple[ShapeLike, ...], dtype: DTypeLike,
            device: DeviceLike | None, requires_grad: bool) -> Tensor:
    dev = resolve(device)
    dtype = as_dtype(dtype, method) or float32
    if dtype.kind != "f":
        raise TypeError(f"gpuad.{method}: samples are floating-point; dtype {dtype} is not")
    return _finish(getattr(dev.backend, method)(shape_arg(shape), dtype), dev, requires_grad)


def rand(*shape: ShapeLike, dtype: DTypeLike = None, device: DeviceLike | None = None,
         requires_grad: bool = False) -> Tensor:
    """Uniform samples in [0, 1).

    >>> x = ad.rand(2, 3)
    >>> x.shape, x.dtype
    ((2, 3), dtype('float32'))
    >>> bool(((x >= 0) & (x < 1)).all())
    True
    """
    return _random("rand", shape, dtype, device, requires_grad)


def randn(*shape: ShapeLike, dtype: DTypeLike = None, device: DeviceLike | None = None,
          requires_grad: bool = False) -> Tensor:
    """Standard normal samples (mean 0, standard deviation 1).

    >>> x = ad.randn(2, 3, dtype=ad.float64)
    >>> x.shape, x.dtype
    ((2, 3), dtype('float64'))
    """
    return _random("randn", shape, dtype, device, requires_grad)
