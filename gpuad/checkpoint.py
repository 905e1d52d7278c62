"""Checkpoints: ``ad.save(obj, path)`` and ``ad.load(path, device=None)`` in the safetensors
format (the ``safetensors`` package: gpuad's ``checkpoint`` extra).

``obj`` is a state dict, or a dict of tensors, arrays and plain metadata (numbers, strings,
booleans, None, and lists or dicts of them), nested dicts of those included (an optimizer's
state dict, a model's next to it). Tensors go into the file as arrays; everything else goes into
its JSON header. Loading reads arrays and JSON only, so it never runs code from the file (a
pickle is refused, not unpickled).
"""
from __future__ import annotations

import json
import os
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from .backends.probe import install_hint
from .creation import tensor
from .errors import DeviceUnavailableError
from .tensor import Tensor

if TYPE_CHECKING:  # (gpuad imports its aliases for the checker only)
    from ._typing import DeviceLike

_META = "gpuad"
_SEP = "\x1f"  # joins nested keys (a character no sensible key contains)


def _module() -> ModuleType:
    try:
        import safetensors.numpy as st
    except ImportError:
        raise ImportError("gpuad: checkpoints need the safetensors package: "
                          + install_hint("checkpoint")) from None
    return st


def _split(obj: object, prefix: str, arrays: dict[str, np.ndarray]) -> Any:
    """Arrays into ``arrays`` (flat names); returns the structure with placeholders."""
    if isinstance(obj, Tensor):
        arrays[prefix] = np.asarray(obj.numpy(), order="C")  # (0-d stays 0-d)
        return {"__tensor__": prefix}
    if hasattr(obj, "__cuda_array_interface__") and hasattr(obj, "get"):
        obj = obj.get()  # a CuPy array (an optimizer's state on CUDA)
    if isinstance(obj, np.ndarray):
        arrays[prefix] = np.asarray(obj, order="C")
        return {"__array__": prefix}
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            if isinstance(k, bool) or not isinstance(k, (str, int)):
                raise TypeError(f"gpuad.save: dict keys must be strings or ints, got {k!r}")
            if isinstance(k, str) and (k.startswith("__") or _SEP in k):
                raise TypeError(f"gpuad.save: the key {k!r} is reserved (it starts with '__' "
                                "or holds a control character)")
            name = k if isinstance(k, str) else f"__int__{k}"
            if name in out or (isinstance(k, int) and str(k) in obj):
                raise TypeError(f"gpuad.save: the keys {k!r} and {str(k)!r} would collide")
            out[name] = _split(v, f"{prefix}{_SEP}{k}" if prefix else str(k), arrays)
        return out
    if isinstance(obj, (list, tuple)):
        return [_split(v, f"{prefix}{_SEP}{i}", arrays) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"gpuad.save: cannot store a {type(obj).__name__} (at {prefix!r}); a "
                    "checkpoint holds tensors, arrays and plain data (numbers, strings, lists, "
                    "dicts)")


def save(obj: dict[Any, Any], path: str | os.PathLike[str]) -> None:
    """Write ``obj`` to ``path`` as a safetensors file.

    >>> import os, tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = os.path.join(folder, "model.safetensors")
    ...     ad.save({"weight": ad.tensor([1.0, 2.0]), "step": 3}, path)
    ...     print(sorted(ad.load(path, device="cpu")))
    ['step', 'weight']
    """
    st = _module()
    if not isinstance(obj, dict):
        raise TypeError(f"gpuad.save: expected a dict (a state dict), got {type(obj).__name__}")
    arrays: dict[str, np.ndarray] = {}
    layout = _split(obj, "", arrays)
    data = st.save(arrays, metadata={_META: json.dumps(layout)})
    try:
        with open(path, "wb") as f:  # (Python's own OSError subclasses, naming the path)
            f.write(data)
    except OSError as exc:
        raise type(exc)(exc.errno, f"gpuad.save: cannot write the checkpoint to {path!r}: "
                        f"{exc.strerror}", exc.filename) from None


def _join(layout: Any, arrays: dict[str, np.ndarray], device: DeviceLike | None) -> Any:
    if isinstance(layout, dict):
        if "__tensor__" in layout and len(layout) == 1:
            return tensor(arrays[layout["__tensor__"]], device=device)
        if "__array__" in layout and len(layout) == 1:
            return arrays[layout["__array__"]]
        return {(int(k[7:]) if k.startswith("__int__") else k): _join(v, arrays, device)
                for k, v in layout.items()}
    if isinstance(layout, list):
        return [_join(v, arrays, device) for v in layout]
    return layout


def load(path: str | os.PathLike[str], device: DeviceLike | None = None) -> dict[Any, Any]:
    """Read a checkpoint written by :func:`save`: tensors on ``device`` (the default device
    when None), plain data as it was (tuples come back as lists). A file that is not a
    safetensors checkpoint (a pickle, a truncated or corrupt file) raises ValueError.

    >>> import os, tempfile
    >>> model = ad.nn.Linear(2, 1)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = os.path.join(folder, "model.safetensors")
    ...     ad.save({"model": model.state_dict(), "epoch": 5, "tags": ("a", "b")}, path)
    ...     state = ad.load(path, device="cpu")
    >>> state["epoch"], state["tags"], state["model"]["weight"].shape
    (5, ['a', 'b'], (1, 2))
    >>> bool((state["model"]["bias"] == model.bias).all())
    True
    """
    _module()
    from safetensors import safe_open

    try:
        with open(path, "rb") as f:
            head = f.read(8)
        if len(head) < 8:
            raise ValueError("it is too short")
        with safe_open(str(path), framework="numpy") as f:  # (it never unpickles)
            meta = f.metadata() or {}
            arrays = {k: f.get_tensor(k) for k in f.keys()}
        layout = json.loads(meta[_META]) if _META in meta else None
        if layout is None:  # a safetensors file from elsewhere: its tensors by name
            return {k: _join({"__tensor__": k}, arrays, device) for k in arrays}
        return _join(layout, arrays, device)
    except (FileNotFoundError, DeviceUnavailableError):
        raise
    except Exception as exc:  # the format library's errors, JSON errors, short reads
        raise ValueError(
            f"gpuad.load: {path} is not a readable gpuad checkpoint (safetensors format): "
            f"{exc}. A pickle (torch.save, np.save of objects) is never loaded, since "
            "unpickling can run code; a truncated or corrupt file cannot be loaded") from None
