"""Assembles the stand-in's ``cupy`` and ``cupyx`` modules from the allow-list of real CuPy
names (tests/cupy_names.json, written by tests/cupy_names.py): each allowed name is the
stand-in's own object where it has one, else NumPy's function of that name made CuPy-like
(tests/fake_cupy/array.py), else absent. Nothing outside the allow-list is offered.
"""
import importlib.machinery
import json
import pathlib
import types

import numpy as np

from . import array, capture, cuda, kernels, nccl, nvmath, pool
from .array import _call, _wrap, ndarray, wrapped_around

ALLOW_LIST = pathlib.Path(__file__).resolve().parents[1] / "cupy_names.json"


def allowed():
    """``(cupy version, {namespace path: [public names]})`` of the committed allow-list."""
    data = json.loads(ALLOW_LIST.read_text())
    return data["cupy_version"], data["names"]


def asnumpy(a, stream=None, order="C", out=None, blocking=True):
    """A host copy of ``a`` (counted when ``a`` is on the device)."""
    if isinstance(a, ndarray):
        return a.get(stream=stream, order=order, out=out, blocking=blocking)
    return np.asarray(a, order=order)


def get_array_module(*args):
    import sys

    return sys.modules["cupy"] if any(isinstance(a, ndarray) for a in args) else np


def flip(m, axis=None):
    """CuPy refuses to flip a 0-d array."""
    if m.ndim == 0:
        raise np.exceptions.AxisError("Input must be >= 1-d")
    return _call(np.flip, "flip", (m, axis), {})


def clip(a, a_min=None, a_max=None, out=None, **kwargs):
    """CuPy wants one bound at least."""
    if a_min is None and a_max is None:
        raise ValueError("array_clip: must set either max or min")
    return _call(np.clip, "clip", (a, a_min, a_max), dict(kwargs, out=out) if out else kwargs)


def from_dlpack(x):
    """CuPy imports device memory only; no stand-in producer has any."""
    raise BufferError("the CuPy stand-in cannot import DLPack capsules (CuPy takes CUDA "
                      f"memory only), got {type(x).__name__}")


class Generator:
    """``cupy.random.Generator``: NumPy's generator, its arrays made on the current device.
    While the current stream captures, a draw is recorded (its state lives on the device in
    CuPy: each replay draws the next numbers); the distributions that copy their parameters
    to the device first (all but these) refuse, as CuPy's do."""

    _CAPTURABLE = ("random", "standard_normal", "standard_exponential", "integers")

    def __init__(self, bit_generator):
        self._rng = np.random.Generator(bit_generator)

    def _draw(self, name, *args, **kwargs):
        def compute():
            return np.asarray(getattr(self._rng, name)(*args, **kwargs))

        c = capture.launching()
        if c is None:
            return _wrap(compute(), cuda.getDevice())
        if name not in self._CAPTURABLE:
            capture.refuse_transfer("H2D")
        state = self._rng.bit_generator.state
        like = compute()  # (its shape and dtype; the state is put back: nothing drawn yet)
        self._rng.bit_generator.state = state
        return capture.fresh(c, compute, like, cuda.getDevice())


class RandomState:
    """``cupy.random.RandomState``, legacy random numbers through cuRAND's host API, whose
    ``setStream`` refuses while the current stream captures."""

    def __init__(self, seed=None, method=None):
        self._rng = np.random.RandomState(seed)

    def _draw(self, name, *args, **kwargs):
        capture.refuse_library("cuRAND")
        return _wrap(np.asarray(getattr(self._rng, name)(*args, **kwargs)), cuda.getDevice())

    def seed(self, seed=None):
        self._rng.seed(seed)


for _name in ("rand", "randn", "random_sample", "standard_normal", "uniform", "normal"):
    setattr(RandomState, _name, lambda self, *a, _name=_name, **k: self._draw(_name, *a, **k))
_legacy = []  # the module's RandomState, made at its first use


def get_random_state():
    if not _legacy:
        _legacy.append(RandomState())
    return _legacy[0]


def _legacy_functions():
    """``cupy.random.rand`` ... : the module's RandomState's draws."""
    names = {"rand": "rand", "randn": "randn", "random_sample": "random_sample",
             "random": "random_sample", "standard_normal": "standard_normal",
             "uniform": "uniform", "normal": "normal"}
    return {name: (lambda *a, _m=method, **k: getattr(get_random_state(), _m)(*a, **k))
            for name, method in names.items()}


def default_rng(seed=None):
    return Generator(np.random.PCG64(seed))


def _generator_methods(names):
    for name in names:
        if hasattr(np.random.Generator, name):
            setattr(Generator, name,
                    lambda self, *a, _name=name, **k: self._draw(_name, *a, **k))


def _erf(x):
    """cupyx's erf: float32 and float64 loops only (float16 gives float32); by SciPy where it
    is installed and has the loop, else math.erf per element (a wider type: a reference)."""
    import math

    erf = np.vectorize(math.erf, otypes=[np.float64])
    if x.dtype in (np.float32, np.float64):
        try:
            from scipy.special import erf
        except ImportError:  # pragma: no cover
            pass
    return np.asarray(erf(x)).astype(np.promote_types(x.dtype, np.float32))


def _scatter_add(a, slices, value):
    np.add.at(a, wrapped_around(slices, a.shape), value)


def _module(name, names, own):
    """Module ``name`` holding those of ``names`` that ``own`` defines."""
    mod = types.ModuleType(name)
    for n in names:
        if n in own:
            setattr(mod, n, own[n])
    return mod


def _cupy_module(names, own):
    """``cupy``: own objects, NumPy's ufuncs, types and constants as they are in CuPy, and
    NumPy's other functions made CuPy-like."""
    cupy = types.ModuleType("cupy")
    for name in names:
        obj = own.get(name, getattr(np, name, None))
        if obj is None or isinstance(obj, types.ModuleType) and name not in own:
            continue
        if name not in own:
            if isinstance(obj, np.ufunc):
                obj = array.ufunc(obj)
            elif callable(obj) and not isinstance(obj, type):
                obj = array.function(name, obj)
            array.register(name, obj)
        setattr(cupy, name, obj)
    return cupy


def modules(devices=1):
    """``{module name: module}`` to place in ``sys.modules`` for ``devices`` stand-in GPUs."""
    version, names = allowed()
    array.install_methods(tuple(names["cupy.ndarray"]))
    _generator_methods(names["cupy.random.Generator"])
    mods = cuda.namespace(devices)
    mods["cupy.cuda.nccl"] = nccl.module()  # (a submodule: not among cupy.cuda's names)
    default_pool, pinned = pool.DefaultPool(), cuda.PinnedMemoryPool()
    _legacy.clear()
    random = _module("cupy.random", names["cupy.random"],
                     {"default_rng": default_rng, "Generator": Generator,
                      "RandomState": RandomState, "get_random_state": get_random_state,
                      "seed": lambda seed=None: get_random_state().seed(seed),
                      **_legacy_functions()})
    own = {"ndarray": ndarray, "ufunc": array.ufunc, "asnumpy": asnumpy,
           "get_array_module": get_array_module, "flip": flip, "clip": clip,
           "from_dlpack": from_dlpack, "ElementwiseKernel": kernels.ElementwiseKernel,
           "ReductionKernel": kernels.ReductionKernel, "RawModule": kernels.RawModule,
           "RawKernel": kernels.RawKernel, "get_default_memory_pool": lambda: default_pool,
           "get_default_pinned_memory_pool": lambda: pinned, "cuda": mods["cupy.cuda"],
           "random": random}
    cupy = _cupy_module(names["cupy"], own)
    cupy.__version__ = f"{version}+standin"  # never mistaken for a real run
    special = _module("cupyx.scipy.special", names["cupyx.scipy.special"],
                      {"erf": lambda x: _call(_erf, "erf", (x,), {})})
    scipy = _module("cupyx.scipy", names["cupyx.scipy"], {"special": special})
    cupyx = _module("cupyx", names["cupyx"], {
        "scipy": scipy,
        "scatter_add": lambda a, slices, value: _call(
            _scatter_add, "scatter_add", (a, slices, value), {})})
    mods.update({"cupy": cupy, "cupy.random": random, "cupyx": cupyx, "cupyx.scipy": scipy,
                 "cupyx.scipy.special": special, **nvmath.modules()})
    for name, mod in mods.items():  # importlib.util.find_spec("cupy") works as with CuPy
        mod.__spec__ = importlib.machinery.ModuleSpec(name, None)
    return mods

