"""The stand-in's ``cupy.ndarray``: a NumPy array that lives on a stand-in device, and the
wrapping that turns NumPy functions into CuPy-like ones.

As real CuPy: implicit conversion to the host (``numpy.asarray(a)``, ``__array__``) raises
TypeError, and so does a numpy.ndarray mixed into a CuPy function or operator; Python and NumPy
scalars are fine; explicit copies to the host (``cupy.asnumpy``, ``get``, ``item``,
``tolist``, ``float``/``int``/``bool``, printing) work and are counted in
``stats.device_to_host``, except while the current stream captures (tests/fake_cupy/capture.py,
which also records the kernels launched meanwhile). New arrays are made on the current device
(in the memory of the current allocator's pool, if one is set: tests/fake_cupy/pool.py); an
operation reading an array of another device raises CuPy's ValueError (no peer access between
stand-in GPUs), except for views and copies, which CuPy makes across devices without a kernel.
"""
import functools
import operator
import weakref

import numpy as np

from . import capture, cuda, pool
from .stats import stats

_IMPLICIT = ("Implicit conversion to a NumPy array is not allowed. Please use `.get()` to "
             "construct a NumPy array explicitly.")

#: functions and methods that only make views or read metadata: no kernel, so no device check
VIEWS = frozenset("""reshape transpose broadcast_to squeeze expand_dims moveaxis swapaxes
    view atleast_1d basic_getitem atleast_2d shape ndim size result_type can_cast
    may_share_memory shares_memory real imag diagonal broadcast_arrays""".split())
#: functions that copy host or device data onto the current device
HOST_INPUTS = frozenset("array asarray asanyarray ascontiguousarray".split())


class ndarray:
    """A NumPy array ``_a`` on stand-in device ``_device``."""

    __slots__ = ("_a", "_device", "_mem", "__weakref__")
    __array_priority__ = 100

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        a = np.empty(shape, dtype=dtype, order=order)
        self._mem = pool.allocate(a.nbytes)
        self._a = a if self._mem is None else pool.place(a, self._mem, copy=False)
        self._device = cuda.getDevice()
        _owners[id(self._a)] = self

    # ---- what real CuPy refuses ---------------------------------------------------------
    def __array__(self, dtype=None, copy=None):
        raise TypeError(_IMPLICIT)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        mine = getattr(_module_ufuncs, ufunc.__name__, None)
        if mine is None or method != "__call__":
            return NotImplemented
        return mine(*inputs, **kwargs)

    def __array_function__(self, func, types, args, kwargs):
        mine = _module_functions.get(func.__name__)
        if mine is None or func.__module__ not in ("numpy", "numpy._core.fromnumeric"):
            return NotImplemented
        return mine(*args, **kwargs)

    # ---- explicit copies to the host (counted) ------------------------------------------
    def get(self, stream=None, order="C", out=None, blocking=True):
        capture.refuse_transfer("D2H", stream)
        stats.device_to_host += 1
        if out is not None:
            out[...] = self._a
            return out
        return np.array(self._a, order=order, copy=True)

    def item(self, *args):
        capture.refuse_transfer("D2H")
        stats.device_to_host += 1
        return self._a.item(*args)

    def tolist(self):
        capture.refuse_transfer("D2H")
        stats.device_to_host += 1
        return self._a.tolist()

    def _scalar(self, kind):
        """``kind(self.get())`` as CuPy computes it: NumPy 2.4 converts only a 0-d array to a
        number, and takes the truth of a one-element array of any shape."""
        if self._a.ndim if kind is not bool else self._a.size != 1:
            kind(self._a)  # NumPy's own error
        capture.refuse_transfer("D2H")
        stats.device_to_host += 1
        return kind(self._a.reshape(()))

    def __float__(self):
        return self._scalar(float)

    def __int__(self):
        return self._scalar(int)

    def __complex__(self):
        return self._scalar(complex)

    def __bool__(self):
        return self._scalar(bool)

    def __index__(self):
        if self._a.dtype.kind not in "iub" or self._a.ndim:
            raise TypeError("only integer scalar arrays can be converted to a scalar index")
        return self._scalar(operator.index)

    def __repr__(self):
        capture.refuse_transfer("D2H")
        stats.device_to_host += 1
        return repr(self._a)

    def __str__(self):
        capture.refuse_transfer("D2H")
        stats.device_to_host += 1
        return str(self._a)

    def __format__(self, spec):
        if self._a.ndim:
            return format(str(self), spec)
        capture.refuse_transfer("D2H")
        stats.device_to_host += 1
        return format(self._a.item(), spec)

    def set(self, arr, stream=None):
        if not isinstance(arr, np.ndarray):
            raise TypeError(f"Only numpy.ndarray can be set to cupy.ndarray: {type(arr)}")
        if arr.shape != self._a.shape or arr.dtype != self._a.dtype:
            raise ValueError("Shape or dtype mismatch")
        capture.refuse_transfer("H2D", stream)
        self._a[...] = arr

    # ---- metadata -------------------------------------------------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    strides = property(lambda self: self._a.strides)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    flags = property(lambda self: self._a.flags)
    device = property(lambda self: cuda.Device(self._device))

    @property
    def base(self):
        """The array owning the memory this one views (None for an owner), as in CuPy."""
        root = _root(self._a)
        if root is self._a:
            return None
        owner = _owners.get(id(root))
        return owner if owner is not None and owner._a is root else _wrap(root, self._device)

    @property
    def data(self):
        return _MemoryPointer(self)

    @property
    def __cuda_array_interface__(self):
        return {"shape": self.shape, "typestr": self.dtype.str, "descr": self.dtype.descr,
                "strides": None if self._a.flags.c_contiguous else self.strides,
                "data": (self._a.ctypes.data, False), "version": 3}

    @shape.setter
    def shape(self, value):
        self._a.shape = value

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        if self._a.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(len(self._a)))

    def __hash__(self):
        raise TypeError("unhashable type: 'cupy.ndarray'")

    # ---- indexing ---------------------------------------------------------------------------
    def __getitem__(self, key):
        key = _index(key)
        parts = key if isinstance(key, tuple) else (key,)
        basic = not any(isinstance(k, (ndarray, list)) for k in parts)
        if basic:
            if not any(k is Ellipsis for k in parts):
                key = (*parts, Ellipsis)  # a view, 0-d too, as in CuPy (NumPy: a scalar copy)
            return _call(operator.getitem, "basic_getitem", (self, key), {})
        return _call(_getitem, "getitem", (self, key), {})

    def __setitem__(self, key, value):
        if isinstance(value, np.ndarray):  # CuPy copies host data in (core.array)
            capture.refuse_transfer("H2D")
            value = _wrap(np.array(value, dtype=self.dtype), cuda.getDevice())
        _call(_setitem, "setitem", (self, _index(key), value), {})

    # ---- methods of NumPy's ndarray (named in the allow-list) --------------------------
    T = property(lambda self: self.transpose())
    mT = property(lambda self: self.swapaxes(-1, -2))
    real = property(lambda self: _wrap(self._a.real, self._device))
    imag = property(lambda self: _wrap(self._a.imag, self._device))

    @real.setter
    def real(self, value):
        self._a.real = _host(value, "real")

    @imag.setter
    def imag(self, value):
        self._a.imag = _host(value, "imag")

    def copy(self, order="C"):
        """A copy on the current device (CuPy copies across devices)."""
        return _call(np.copy, "copy", (self,), {"order": order})

    def __copy__(self):
        return self.copy()

    def __deepcopy__(self, memo):
        return self.copy()

    def __reduce__(self):
        capture.refuse_transfer("D2H")
        stats.device_to_host += 1
        return (_unpickle, (self._a.copy(),))


def _unpickle(a):
    return _wrap(a, cuda.getDevice())


class _MemoryPointer:
    """``ndarray.data``: the device and an address."""

    def __init__(self, a):
        self.device_id = a._device
        self.ptr = a._a.ctypes.data

    @property
    def device(self):
        return cuda.Device(self.device_id)


_owners = weakref.WeakValueDictionary()  # id(NumPy array owning memory): its ndarray


def _root(a):
    """The NumPy array of the ndarray owning ``a``'s memory (or ``a``'s last base)."""
    while isinstance(a.base, np.ndarray):
        owner = _owners.get(id(a))
        if owner is not None and owner._a is a:
            return a
        a = a.base
    return a


def _wrap(value, device, inputs=(), copy=True):
    """A NumPy result as CuPy returns it: arrays and NumPy scalars become ndarrays (an input
    that comes back unchanged, as from ``astype(copy=False)``, is that input). A result in new
    memory is allocated from the current allocator (tests/fake_cupy/pool.py; ``copy`` false:
    left with what that memory held, as ``cupy.empty`` leaves it)."""
    if isinstance(value, (np.ndarray, np.generic)):
        for a in inputs:
            if a._a is value:
                return a
        value = value if isinstance(value, np.ndarray) else np.asarray(value)
        root = _root(value)
        owner = _owners.get(id(root))
        if (owner is None or owner._a is not root) and value.base is not None:
            owner = next((a for a in inputs if np.may_share_memory(value, a._a)), None)
        elif owner is not None and owner._a is not root:
            owner = None
        if owner is not None:  # a view
            return _new(value, device, owner._mem, owner=False)
        mem = pool.allocate(value.nbytes)
        return _new(value if mem is None else pool.place(value, mem, copy), device, mem)
    if isinstance(value, tuple):
        return tuple(_wrap(v, device, inputs) for v in value)
    if isinstance(value, list):
        return [_wrap(v, device, inputs) for v in value]
    return value


def _new(a, device, mem, owner=True):
    """The ndarray over NumPy array ``a`` (in memory ``mem``, None: untracked), registered as
    its memory's owner unless it is a view."""
    out = ndarray.__new__(ndarray)
    out._a, out._device, out._mem = a, device, mem
    if owner:
        _owners[id(a)] = out
    return out


def alias(a):
    """A second ndarray over ``a``'s memory that does not keep its pool chunk in use (what a
    recorded launch holds: the chunk goes back to the pool when its arrays are dropped)."""
    return _new(a._a, a._device, None, owner=False)


def _host(value, where):
    """``value`` as NumPy sees it: ndarrays unwrapped; a numpy.ndarray is an error."""
    if isinstance(value, ndarray):
        return value._a
    if isinstance(value, np.ndarray):
        raise TypeError(f"Unsupported type {np.ndarray} (in cupy {where}: a numpy.ndarray "
                        "mixed with cupy arrays; copy it with cupy.asarray first)")
    if isinstance(value, (list, tuple)):
        return type(value)(_host(v, where) for v in value)
    if isinstance(value, dict):
        return {k: _host(v, where) for k, v in value.items()}
    return value


def _index(key):
    """An index for NumPy: host arrays in an index are allowed (CuPy copies them in)."""
    if isinstance(key, tuple):
        return tuple(_index(k) for k in key)
    if isinstance(key, np.ndarray):
        capture.refuse_transfer("H2D")
        return _wrap(key.copy(), cuda.getDevice())
    if isinstance(key, list):
        capture.refuse_transfer("H2D")
        return [_index(k) for k in key]
    return key


def _getitem(a, key):
    return a[wrapped_around(key, a.shape)]


def _setitem(a, key, value):
    a[wrapped_around(key, a.shape)] = value


def wrapped_around(key, shape):
    """``key`` with each integer index array taken modulo its axis's length: CuPy's integer
    array indexing (getitem, setitem, scatter_add) wraps an index outside its axis around where
    NumPy raises (the "Out-of-bounds indices" difference in CuPy's NumPy comparison); an
    integer scalar still raises, as in CuPy."""
    parts = list(key) if isinstance(key, tuple) else [key]
    taken = sum(map(_axes_of, parts))
    axis, out = 0, []
    for k in parts:
        if k is Ellipsis:
            axis += len(shape) - taken
        elif _axes_of(k) == 1 and not isinstance(k, (int, np.integer, slice)):
            data = k._a if isinstance(k, ndarray) else np.asarray(k)
            if data.dtype.kind in "iu" and axis < len(shape) and shape[axis]:
                k = data.astype(np.int64) % shape[axis]
        out.append(k)
        axis += _axes_of(k)
    return tuple(out) if isinstance(key, tuple) else out[0]


def _axes_of(k):
    """How many axes of the indexed array the index component ``k`` consumes."""
    if k is None or k is Ellipsis:  # (the axes an Ellipsis stands for are counted apart)
        return 0
    if isinstance(k, (ndarray, np.ndarray)) and k.dtype == bool:
        return k.ndim
    if isinstance(k, list) and np.asarray(k).dtype == bool:
        return np.asarray(k).ndim
    return 1


def _arrays(values):
    for v in values:
        if isinstance(v, ndarray):
            yield v
        elif isinstance(v, (list, tuple)):
            yield from _arrays(v)
        elif isinstance(v, dict):
            yield from _arrays(v.values())


def check_device(arrays, device, where):
    """CuPy's check before a kernel: every array on ``device`` (no peer access here)."""
    for a in arrays:
        if a._device != device:
            raise ValueError(
                f"The device where the array resides ({a._device}) is different from the "
                f"current device ({device}). Peer access is unavailable between these "
                f"devices. (in cupy {where})")


def _call(fn, name, args, kwargs):
    """``fn`` (NumPy's) applied as CuPy's ``name`` would be: arrays checked, unwrapped, the
    result wrapped on the current device (views stay on their array's device)."""
    arrays = list(_arrays((args, kwargs)))
    device = cuda.getDevice()
    if name in VIEWS:
        device = arrays[0]._device if arrays else device
    elif name not in ("copy", "array"):
        check_device(arrays, device, name)
    if capture.active():
        c = capture.launching()
        if name in capture.CUBLAS:
            capture.refuse_cublas(name, arrays)
        if c is not None:
            return capture.call(c, fn, name, args, kwargs, device, arrays)
    outs = kwargs.get("out")
    with np.errstate(all="ignore"):  # CUDA has no floating-point warnings
        result = fn(*_host(args, name), **_host(kwargs, name))
    if outs is not None:
        return outs
    return _wrap(result, device, arrays, copy=name not in capture.NO_KERNEL)


def function(name, fn):
    """CuPy's ``cupy.<name>`` from NumPy's function ``fn``."""
    if name in HOST_INPUTS:
        def host_in(a, *args, **kwargs):
            if isinstance(a, ndarray):  # core.pyx _array_from_cupy_ndarray
                if a._device != cuda.getDevice():
                    a = a.copy()  # from another device: a copy on the current one
                elif name in ("asarray", "asanyarray") and kwargs.get("dtype") in (None,
                                                                                  a.dtype):
                    return a
                return _call(fn, "copy" if name == "array" else name, (a, *args), kwargs)
            capture.refuse_transfer("D2H" if list(_arrays([a])) else "H2D")
            return _wrap(np.array(fn(_host_data(a), *args, **_host(kwargs, name)), copy=True),
                         cuda.getDevice())

        wrapper = host_in
    else:
        def wrapper(*args, **kwargs):
            return _call(fn, name, args, kwargs)

    wrapper.__name__ = wrapper.__qualname__ = name
    wrapper.__module__ = "cupy"
    return wrapper


def _host_data(a):
    """Data for ``cupy.asarray``: host data as is, lists of ndarrays gathered (CuPy copies
    device data it finds inside a list)."""
    if isinstance(a, (list, tuple)) and any(isinstance(v, ndarray) for v in _arrays(a)):
        return _host(a, "asarray")
    return a


class ufunc:
    """``cupy.<ufunc>``: NumPy's ufunc applied as CuPy's (cupy/_core/_kernel.pyx): ``__call__``
    takes ``out``, ``dtype`` and ``casting`` only; ``reduce``/``accumulate`` exist for add and
    multiply, ``reduceat`` for add, ``at`` for the scatter operations."""

    _REDUCE = ("add", "multiply")
    _SCATTER = ("add", "subtract", "maximum", "minimum", "bitwise_and", "bitwise_or",
                "bitwise_xor")

    def __init__(self, np_ufunc):
        self._u = np_ufunc
        self.__name__ = self.name = np_ufunc.__name__
        self.nin, self.nout, self.nargs = np_ufunc.nin, np_ufunc.nout, np_ufunc.nargs
        self.types = np_ufunc.types

    def __call__(self, *args, **kwargs):
        known = {k: kwargs.pop(k) for k in ("out", "dtype", "casting") if k in kwargs}
        if "_where" in kwargs:
            known["where"] = kwargs.pop("_where")
        if kwargs:
            raise TypeError(f"Wrong arguments {kwargs}")
        return _call(self._u, self.__name__, args, known)

    def _unsupported(self, method, names):
        if self.__name__ not in names:
            raise NotImplementedError(f"`cupy_{self.__name__}.{method}` is not supported yet")

    def reduce(self, array, axis=0, dtype=None, out=None, keepdims=False):
        self._unsupported("reduce", self._REDUCE)
        return _call(self._u.reduce, self.__name__, (array, axis, dtype, out, keepdims), {})

    def accumulate(self, array, axis=0, dtype=None, out=None):
        self._unsupported("accumulate", self._REDUCE)
        return _call(self._u.accumulate, self.__name__, (array, axis, dtype, out), {})

    def reduceat(self, array, indices, axis=0, dtype=None, out=None):
        self._unsupported("reduceat", self._REDUCE[:1])
        return _call(self._u.reduceat, self.__name__, (array, indices, axis, dtype, out), {})

    def outer(self, A, B, **kwargs):
        return _call(self._u.outer, self.__name__, (A, B), kwargs)

    def at(self, a, indices, b=None):
        self._unsupported("at", self._SCATTER)
        return _call(self._u.at, self.__name__, (a, indices, b), {})

    def __repr__(self):
        return f"<ufunc '{self.__name__}'>"


_module_functions = {}  # cupy's functions by name, for __array_function__
_module_ufuncs = type("ufuncs", (), {})  # cupy's ufuncs by name, for __array_ufunc__


def method(name):
    """``ndarray.<name>`` from NumPy's method of that name."""

    def m(self, *args, **kwargs):
        return _call(getattr(np.ndarray, name), name, (self, *args), kwargs)

    m.__name__ = m.__qualname__ = name
    return m


def _binary(op, reflected=False):
    def m(self, other):
        if isinstance(other, np.ndarray):
            raise TypeError(f"Unsupported type {np.ndarray} (a numpy.ndarray in an operator "
                            "with a cupy.ndarray)")
        if not isinstance(other, (ndarray, int, float, complex, bool, np.generic)):
            return NotImplemented
        args = (other, self) if reflected else (self, other)
        return _call(op, op.__name__, args, {})

    return m


def _inplace(op):
    def m(self, other):
        if isinstance(other, np.ndarray):
            raise TypeError(f"Unsupported type {np.ndarray} (a numpy.ndarray in an operator "
                            "with a cupy.ndarray)")
        check_device([self, *(_arrays([other]))], cuda.getDevice(), op.__name__)
        a, b = self._a, _host(other, op.__name__)

        def run():
            with np.errstate(all="ignore"):
                op(a, b, out=a)

        capture.launch(run, [self, *_arrays([other])])
        return self

    return m


def _unary(op):
    return lambda self: _call(op, op.__name__, (self,), {})


def _operators():
    binary = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "truediv": np.true_divide,
              "floordiv": np.floor_divide, "mod": np.remainder, "pow": np.power,
              "matmul": np.matmul, "and": np.bitwise_and, "or": np.bitwise_or,
              "xor": np.bitwise_xor, "lshift": np.left_shift, "rshift": np.right_shift}
    for name, op in binary.items():
        setattr(ndarray, f"__{name}__", _binary(op))
        setattr(ndarray, f"__r{name}__", _binary(op, reflected=True))
        setattr(ndarray, f"__i{name}__", _inplace(op))
    compare = {"lt": np.less, "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal,
               "eq": np.equal, "ne": np.not_equal}
    for name, op in compare.items():
        setattr(ndarray, f"__{name}__", _binary(op))
    for name, op in {"neg": np.negative, "pos": np.positive, "abs": np.absolute,
                     "invert": np.invert}.items():
        setattr(ndarray, f"__{name}__", _unary(op))


_operators()
ndarray.__module__ = "cupy"  # as cupy.ndarray's


@functools.cache
def install_methods(names):
    """Give ndarray NumPy's methods among ``names`` (the allow-list's ndarray names) that it
    does not define itself; returns the names given."""
    given = []
    for name in names:
        if name in vars(ndarray) or not callable(getattr(np.ndarray, name, None)):
            continue
        setattr(ndarray, name, method(name))
        given.append(name)
    return tuple(given)


def register(name, obj):
    """Note cupy's function or ufunc ``name`` for NumPy's dispatch protocols."""
    if isinstance(obj, ufunc):
        setattr(_module_ufuncs, name, obj)
    else:
        _module_functions[name] = obj
