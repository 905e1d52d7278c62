"""Creating tensors: from data, filled, ranges, random (seeded by ``manual_seed``), and from
other libraries' arrays (NumPy, DLPack)."""
from .devices import device as _device
from .devices import resolve
from .dtypes import as_dtype, check_numeric, float32, infer_dtype, value_dtype
from .ops._args import shape_arg
from .tensor import Tensor


def _finish(a, dev, requires_grad):
    t = Tensor(a, dev)
    if requires_grad:
        t.requires_grad_(True)
    return t


def _as_cupy(data):
    """Any CUDA array (CuPy, PyTorch, Numba, ...) as a CuPy array on the same memory."""
    import cupy

    return cupy.asarray(data)


def _source_device(data):
    """The device an existing array lives on."""
    if hasattr(data, "__cuda_array_interface__"):
        return _device(f"cuda:{_as_cupy(data).device.id}")
    return None


def tensor(data, dtype=None, device=None, requires_grad=False):
    """A new tensor holding a copy of ``data`` (nested lists, scalars, arrays or a Tensor).

    Python floats default to float32 and ints int64; arrays keep their dtype.
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
            dtype = data.dtype if hasattr(data, "__cuda_array_interface__") else infer_dtype(data)
        if dev.type == "cpu" and hasattr(data, "__cuda_array_interface__"):
            data = data.get()
    except (TypeError, ValueError, OverflowError) as exc:
        raise _refused(data, exc) from None
    check_numeric(dtype, "tensor", lambda: f"from {_describe(data)}")
    try:
        array = dev.backend.copy(dev.backend.asarray(data, dtype=dtype))
    except (TypeError, ValueError, OverflowError) as exc:
        raise _refused(data, exc) from None
    return _finish(array, dev, requires_grad)


def _refused(data, exc):
    return TypeError(
        f"gpuad.tensor: cannot make a tensor from {_describe(data)}: {exc}. Pass numbers "
        "(bool, int, float), nested lists of one shape, or an array"
    )


def _describe(data):
    text = repr(data)
    return f"{type(data).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"


def as_tensor(data, dtype=None, device=None):
    """``data`` as a tensor, without a copy when it already is one of the right kind."""
    if isinstance(data, Tensor) and device is None and dtype is None:
        return data
    return tensor(data, dtype=dtype, device=device)


def from_numpy(array):
    """A CPU tensor sharing memory with the NumPy array ``array``."""
    import numpy as np

    if not isinstance(array, np.ndarray):
        raise TypeError(f"gpuad.from_numpy expects a numpy.ndarray, got {type(array).__name__}")
    check_numeric(array.dtype, "from_numpy", "from this array")
    return Tensor(array, resolve("cpu"))


def from_dlpack(obj):
    """A tensor sharing memory with any DLPack producer (CuPy, PyTorch, JAX, NumPy)."""
    kind, index = obj.__dlpack_device__() if hasattr(obj, "__dlpack_device__") else (1, 0)
    if kind not in (1, 2, 13):  # DLPack's CPU, CUDA, CUDA managed
        raise TypeError(
            f"gpuad.from_dlpack: DLPack device type {kind} is not supported; gpuad takes CPU "
            "(1) and CUDA (2, 13) memory"
        )
    dev = resolve("cpu" if kind == 1 else f"cuda:{index}")
    return Tensor(dev.backend.from_dlpack(obj), dev)


def _filled(method, shape, dtype, device, requires_grad, *args):
    dev = resolve(device)
    dtype = as_dtype(dtype, method) or float32
    a = getattr(dev.backend, method)(shape_arg(shape), *args, dtype=dtype)
    return _finish(a, dev, requires_grad)


def zeros(*shape, dtype=None, device=None, requires_grad=False):
    return _filled("zeros", shape, dtype, device, requires_grad)


def ones(*shape, dtype=None, device=None, requires_grad=False):
    return _filled("ones", shape, dtype, device, requires_grad)


def empty(*shape, dtype=None, device=None, requires_grad=False):
    return _filled("empty", shape, dtype, device, requires_grad)


def full(shape, fill_value, dtype=None, device=None, requires_grad=False):
    inferred = value_dtype(fill_value, "full")
    dtype = as_dtype(dtype, "full") or inferred
    dev = resolve(device)
    a = dev.backend.full(shape_arg((shape,)), fill_value, dtype=dtype)
    return _finish(a, dev, requires_grad)


def fill(dims, value, dtype=None, device=None):
    """TensorFlow's spelling of :func:`full`; ``dims`` may also be a tensor of ints."""
    if isinstance(dims, Tensor):
        dims = dims.tolist()
    value_dtype(value, "fill")
    return full(dims, value, dtype=dtype, device=device)


def _like(t, method, dtype, device, requires_grad, *args):
    if not isinstance(t, Tensor):
        t = tensor(t, device=device)
    dev = resolve(device) if device is not None else t._dev
    dtype = as_dtype(dtype, f"{method}_like") or t.dtype
    a = getattr(dev.backend, method)(t.shape, *args, dtype=dtype)
    return _finish(a, dev, requires_grad)


def zeros_like(t, dtype=None, device=None, requires_grad=False):
    return _like(t, "zeros", dtype, device, requires_grad)


def ones_like(t, dtype=None, device=None, requires_grad=False):
    return _like(t, "ones", dtype, device, requires_grad)


def full_like(t, fill_value, dtype=None, device=None, requires_grad=False):
    value_dtype(fill_value, "full_like")
    return _like(t, "full", dtype, device, requires_grad, fill_value)


def empty_like(t, dtype=None, device=None, requires_grad=False):
    return _like(t, "empty", dtype, device, requires_grad)


def arange(start, stop=None, step=1, dtype=None, device=None, requires_grad=False):
    """Evenly spaced values in [start, stop); ints give int64, floats float32."""
    if stop is None:
        start, stop = 0, start
    for bound in (start, stop, step):
        if value_dtype(bound, "arange").kind not in "biuf":
            raise TypeError(f"gpuad.arange: start, stop and step are real numbers, got {bound!r}")
    dtype = as_dtype(dtype, "arange") or infer_dtype([start, stop, step])
    dev = resolve(device)
    return _finish(dev.backend.arange(start, stop, step, dtype=dtype), dev, requires_grad)


def linspace(start, stop, num=50, dtype=None, device=None, requires_grad=False):
    value_dtype(start, "linspace")
    value_dtype(stop, "linspace")
    dev = resolve(device)
    a = dev.backend.linspace(start, stop, num, dtype=as_dtype(dtype, "linspace") or float32)
    return _finish(a, dev, requires_grad)


def eye(n, m=None, dtype=None, device=None, requires_grad=False):
    dev = resolve(device)
    dtype = as_dtype(dtype, "eye") or float32
    return _finish(dev.backend.eye(n, m, dtype=dtype), dev, requires_grad)


def manual_seed(seed):
    """Seed the random generators of every device, so ``rand``/``randn`` repeat."""
    from .backends import manual_seed as seed_backends

    seed_backends(int(seed))


def _random(method, shape, dtype, device, requires_grad):
    dev = resolve(device)
    dtype = as_dtype(dtype, method) or float32
    if dtype.kind != "f":
        raise TypeError(f"gpuad.{method}: samples are floating-point; dtype {dtype} is not")
    return _finish(getattr(dev.backend, method)(shape_arg(shape), dtype), dev, requires_grad)


def rand(*shape, dtype=None, device=None, requires_grad=False):
    """Uniform samples in [0, 1)."""
    return _random("rand", shape, dtype, device, requires_grad)


def randn(*shape, dtype=None, device=None, requires_grad=False):
    """Standard normal samples."""
    return _random("randn", shape, dtype, device, requires_grad)
