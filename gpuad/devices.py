"""Devices, the default device and the CPU-fallback policy (SPEC section 2).

A :class:`Device` is interned: there is one object per device string, so ops compare devices
with ``is``. Resolving a device for use (``resolve``) checks CUDA availability once and attaches
the backend; naming one (``device("cuda")``) checks nothing.
"""
from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable
from typing import Any, TypeAlias

from ._frames import user_stacklevel
from .backends import get_backend
from .backends.probe import cuda_unavailable_reason
from .errors import DeviceUnavailableError


class Device:
    """A device kind and index: ``cpu`` or ``cuda:N``. Compares equal to its string.

    >>> d = ad.device("cuda:1")  # naming a device does not check that it exists
    >>> d.type, d.index, str(d)
    ('cuda', 1, 'cuda:1')
    >>> d == "cuda:1", ad.device("cpu") == "cpu"
    (True, True)
    """

    __slots__ = ("type", "index", "_str", "_backend")

    def __init__(self, type_: str, index: int | None) -> None:
        self.type = type_
        self.index = index
        self._str = type_ if type_ == "cpu" else f"{type_}:{index}"
        self._backend: Any = None

    @property
    def backend(self) -> Any:
        """The :class:`~gpuad.backends.base.Backend` that runs ops on this device (made on first
        use). Typed ``Any``: its array functions are set per instance, from NumPy or CuPy."""
        if self._backend is None:
            self._backend = get_backend(self)
        return self._backend

    def __str__(self) -> str:
        return self._str

    def __repr__(self) -> str:
        if self.type == "cpu":
            return "device(type='cpu')"
        return f"device(type='{self.type}', index={self.index})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            try:
                other = device(other)
            except ValueError:
                return False
        return self is other

    def __hash__(self) -> int:
        return hash(self._str)

    def __reduce__(self) -> tuple[Callable[[DeviceLike], Device], tuple[str]]:
        return (device, (self._str,))


#: A device argument: a :class:`Device`, or its name ("cpu", "cuda", "cuda:N").
DeviceLike: TypeAlias = "Device | str"

_interned: dict[object, Device] = {}
_lock = threading.Lock()


def device(spec: DeviceLike) -> Device:
    """The :class:`Device` named by ``spec`` ("cpu", "cuda", "cuda:N", or a Device).

    >>> ad.device("cpu")
    device(type='cpu')
    >>> ad.device("cuda")  # (one object per device: "cuda" is "cuda:0")
    device(type='cuda', index=0)
    >>> ad.device("gpu") is ad.device("cuda:0")
    True
    """
    if isinstance(spec, Device):
        return spec
    dev = _interned.get(spec)
    if dev is not None:
        return dev
    if not isinstance(spec, str):
        raise TypeError(f"gpuad: a device is a string like 'cpu' or 'cuda:0', got {spec!r}")
    text = spec.strip().lower()
    kind, _, idx = text.partition(":")
    if kind == "cpu" and not idx:
        key = "cpu"
    elif kind in ("cuda", "gpu") and (not idx or idx.isdigit()):
        key = f"cuda:{int(idx) if idx else 0}"
    else:
        raise ValueError(
            f"gpuad: unknown device {spec!r}; use 'cpu', 'cuda' or 'cuda:N' (or 'auto' as default)"
        )
    with _lock:
        dev = _interned.get(key)
        if dev is None:
            t, _, i = key.partition(":")
            dev = Device(t, int(i) if i else None)
            _interned[key] = dev
        _interned[spec] = dev
    return dev


class _Policy:
    """Process-wide device settings, read from the environment once, on first use."""

    default: Device | None = None  # None until first resolved
    fallback: bool | None = None  # None until first read
    warned = False


_FALLBACK_ON = ("1", "true", "yes", "on")
_FALLBACK_OFF = ("", "0", "false", "no", "off")


def _fallback_setting() -> bool:
    """``GPUAD_CPU_FALLBACK`` as a bool (unset means off); ValueError for any other text."""
    text = os.environ.get("GPUAD_CPU_FALLBACK", "")
    value = text.strip().lower()
    if value in _FALLBACK_ON:
        return True
    if value in _FALLBACK_OFF:
        return False
    on, off = ", ".join(_FALLBACK_ON), ", ".join(v for v in _FALLBACK_OFF if v)
    raise ValueError(
        f"gpuad: GPUAD_CPU_FALLBACK={text!r} is not a valid setting: use one of {on} to fall "
        f"back to the CPU when CUDA is unusable, or one of {off} (or leave it unset) to raise"
    )


def cpu_fallback_enabled() -> bool:
    """Whether CPU fallback is on: ``ad.set_cpu_fallback``, else ``GPUAD_CPU_FALLBACK`` (read
    once; a value that is neither on nor off raises ValueError naming the accepted ones)."""
    if _Policy.fallback is None:
        _Policy.fallback = _fallback_setting()
    return _Policy.fallback


def set_cpu_fallback(flag: bool = True) -> None:
    """Allow (True) or forbid (False) silently-warned CPU use when CUDA is asked for but absent.

    With it on, ``device="cuda"`` on a machine without a usable GPU gives CPU tensors (with one
    RuntimeWarning); off (the default unless ``GPUAD_CPU_FALLBACK`` says otherwise), it raises
    DeviceUnavailableError.

    >>> from gpuad.devices import cpu_fallback_enabled
    >>> before = cpu_fallback_enabled()
    >>> ad.set_cpu_fallback(True)
    >>> cpu_fallback_enabled()
    True
    >>> ad.set_cpu_fallback(before)
    """
    _Policy.fallback = bool(flag)


def _refusal(dev: Device) -> str | None:
    """Why ``dev`` (a CUDA device) cannot be used, None when it can: the probe's answer, else
    the CUDA runtime's refusal while its backend is made (a driver older than CuPy's CUDA)."""
    reason = cuda_unavailable_reason(dev.index)
    if reason is not None:
        return reason
    try:
        dev.backend  # noqa: B018  (made now: the runtime may still refuse)
    except DeviceUnavailableError as exc:  # (a refusal is recorded; a failed import is not)
        return cuda_unavailable_reason(dev.index) or str(exc)
    return None


def _cuda_or_fallback(dev: Device) -> Device:
    reason = _refusal(dev)
    if reason is None:
        return dev
    if cpu_fallback_enabled():
        if not _Policy.warned:
            _Policy.warned = True
            warnings.warn(
                f"gpuad: {dev} is unavailable ({reason}); falling back to the CPU because CPU "
                "fallback is enabled (GPUAD_CPU_FALLBACK=1 or ad.set_cpu_fallback(True))",
                RuntimeWarning,
                stacklevel=user_stacklevel(),
            )
        return device("cpu")
    raise DeviceUnavailableError(f"gpuad: cannot use {dev}: {reason}")


def _auto() -> Device:
    cuda0 = device("cuda:0")
    return device("cpu") if _refusal(cuda0) else cuda0


def resolve(spec: DeviceLike | None) -> Device:
    """The usable Device for ``spec`` (``None`` means the default), or DeviceUnavailableError.

    Its backend is set up here, so tensors only ever live on devices whose backend exists and
    the per-op code can read ``device._backend`` without a check.
    """
    if spec is None:
        return get_default_device()
    if isinstance(spec, str) and spec.strip().lower() == "auto":
        dev = _auto()
    else:
        dev = device(spec)
        if dev.type == "cuda":
            dev = _cuda_or_fallback(dev)
    dev.backend  # noqa: B018  (set up the backend now)
    return dev


def get_default_device() -> Device:
    """The device tensors are made on when none is named (``GPUAD_DEVICE``, default ``auto``).

    The environment is read on first use, ``GPUAD_CPU_FALLBACK`` included, so a bad value of
    either raises here (ValueError) or a GPU it asks for is missing (DeviceUnavailableError).

    >>> ad.zeros(2).device == ad.get_default_device()
    True
    """
    if _Policy.default is None:
        _Policy.default = _default_from_env()
    return _Policy.default


def _default_from_env() -> Device:
    """GPUAD_DEVICE's device (auto when unset), its errors naming the setting."""
    env = os.environ.get("GPUAD_DEVICE", "")
    cpu_fallback_enabled()  # (its setting is checked whatever the device)
    if not env:
        return resolve("auto")
    try:
        return resolve(env)
    except ValueError:
        raise ValueError(f"gpuad: GPUAD_DEVICE={env!r} is not a device: use 'auto' (the "
                         "default), 'cpu', 'cuda' or 'cuda:N'") from None
    except DeviceUnavailableError as exc:
        raise DeviceUnavailableError(f"{exc} (GPUAD_DEVICE={env!r} asks for it: unset it or "
                                     "set GPUAD_DEVICE=cpu)") from None


def set_default_device(spec: DeviceLike) -> None:
    """Set the default device; ``"auto"`` picks cuda:0 where usable, else the CPU.

    >>> before = ad.get_default_device()
    >>> ad.set_default_device("cpu")
    >>> ad.zeros(2).device
    device(type='cpu')
    >>> ad.set_default_device(before)
    """
    _Policy.default = resolve(spec)
