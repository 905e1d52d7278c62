"""The type aliases of gpuad's public API, for annotations in gpuad and in user code.

They cost nothing at run time: functions are annotated with them, and only type checkers and
``help`` read annotations. Each is defined on the floor that can name its parts (``DeviceLike``
in devices, ``DTypeLike`` and ``Scalar`` in dtypes, ``TensorLike`` in tensor); this module
gathers them, with those that need no gpuad type. gpuad's own modules import it under
``TYPE_CHECKING`` only: it imports ``tensor``, so at run time it may not be what loads it.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias

from .devices import DeviceLike
from .dtypes import DTypeLike, Scalar
from .tensor import TensorLike

__all__ = ["Array", "Axis", "DTypeLike", "DeviceLike", "Scalar", "ShapeLike", "TensorLike"]

#: A backend array: a ``numpy.ndarray`` on the CPU, a ``cupy.ndarray`` on CUDA (CuPy ships no
#: type information, so a checker knows it only as ``Any``).
Array: TypeAlias = Any

#: An axis argument: one axis, several, or ``None`` for all of them (negative counts from the end).
Axis: TypeAlias = int | Sequence[int] | None

#: A shape: one length, or a sequence of lengths.
ShapeLike: TypeAlias = int | Sequence[int]
