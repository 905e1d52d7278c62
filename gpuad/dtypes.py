"""The dtypes gpuad exposes (plain NumPy dtypes) and the rules for inferring them."""
from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

#: A dtype argument: a dtype (``ad.float32``), a NumPy or Python type, a name ("float32"), or
#: ``None`` (inferred).
DTypeLike: TypeAlias = npt.DTypeLike | None

#: One Python or NumPy number: what a tensor holds one of.
Scalar: TypeAlias = bool | int | float | complex | np.generic

float16 = np.dtype("float16")
float32 = np.dtype("float32")
float64 = np.dtype("float64")
int32 = np.dtype("int32")
int64 = np.dtype("int64")
bool_ = np.dtype("bool")

half, double, long = float16, float64, int64  # PyTorch spellings

SUPPORTED = (float16, float32, float64, int32, int64, bool_)
_NAMES = "ad.float16, ad.float32, ad.float64, ad.int32, ad.int64, ad.bool_"

#: The NumPy dtype kinds a tensor can hold: bool, signed and unsigned int, float, complex.
NUMERIC = "biufc"


def check_numeric(dtype: np.dtype, op: str, what: str | Callable[[], str]) -> np.dtype:
    """``dtype`` if a tensor can hold it (a number type, :data:`NUMERIC`); else a TypeError
    naming ``op`` and ``what`` it was asked to make a tensor from (or of): a string, or a
    function giving one, called only for the message (a repr of the data costs more than
    making the tensor). The one check behind every way of making a tensor."""
    if dtype.kind not in NUMERIC:
        raise TypeError(
            f"gpuad.{op}: cannot make a tensor {what() if callable(what) else what}: "
            f"dtype {dtype} is not a number type; "
            f"tensors hold bool, integer, floating or complex numbers: use one of {_NAMES}"
        )
    return dtype


def as_dtype(dtype: DTypeLike, op: str = "dtype") -> np.dtype | None:
    """Normalise a user dtype (string, NumPy type, dtype or None) to a NumPy dtype or None;
    a non-numeric one (str, object, datetime, structured) is refused, naming ``op``."""
    if dtype is None:
        return None
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"gpuad.{op}: {dtype!r} is not a dtype; use one of {_NAMES}") from None
    return check_numeric(dt, op, lambda: f"of dtype={getattr(dtype, '__name__', dtype)!r}")


def is_floating(dtype: np.dtype) -> bool:
    """Whether ``dtype`` is a floating-point type (float16, float32, float64)."""
    return dtype.kind == "f"


def infer_dtype(data: object) -> np.dtype:
    """The dtype `ad.tensor(data)` gets without an explicit dtype.

    Python floats become float32 and ints int64 (PyTorch's defaults); NumPy arrays and NumPy
    scalars keep their dtype.
    """
    if isinstance(data, (np.ndarray, np.generic)):
        return data.dtype
    dt = np.asarray(data).dtype
    if dt.kind == "f":
        return float32
    if dt.kind in "iu":
        return int64
    return dt


def value_dtype(value: object, op: str) -> np.dtype:
    """The dtype of a single value (a fill value, a range bound, a value to store), refused
    unless it is a number."""
    dtype = value.dtype if hasattr(value, "dtype") else infer_dtype(value)
    return check_numeric(dtype, op, lambda: f"from the value {value!r}")
