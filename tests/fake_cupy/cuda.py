"""``cupy.cuda`` of the stand-in: the current device, ``Device``, streams and events, the
runtime calls gpuad makes, memory pools and CuPy's error types, as CuPy 14.2 has them
(cupy/cuda/device.pyx, stream.pyx, memory.pyx; cupy_backends/cuda/api/runtime.pyx, driver.pyx).
"""
import threading
import time
import types

from .stats import stats

# ---- errors ---------------------------------------------------------------------------------
_RUNTIME_ERRORS = {1: ("cudaErrorInvalidValue", "invalid argument"),
                   2: ("cudaErrorMemoryAllocation", "out of memory"),
                   101: ("cudaErrorInvalidDevice", "invalid device ordinal"),
                   400: ("cudaErrorInvalidResourceHandle", "invalid resource handle"),
                   401: ("cudaErrorIllegalState",
                         "the operation cannot be performed in the present state"),
                   600: ("cudaErrorNotReady", "device not ready"),
                   700: ("cudaErrorIllegalAddress", "an illegal memory access was encountered"),
                   900: ("cudaErrorStreamCaptureUnsupported",
                         "operation not permitted when stream is capturing"),
                   901: ("cudaErrorStreamCaptureInvalidated",
                         "operation failed due to a previous error during capture"),
                   906: ("cudaErrorStreamCaptureImplicit",
                         "operation would make the legacy stream depend on a capturing blocking "
                         "stream")}
_DRIVER_ERRORS = {1: ("CUDA_ERROR_INVALID_VALUE", "invalid argument"),
                  500: ("CUDA_ERROR_NOT_FOUND", "named symbol not found")}


class CUDARuntimeError(RuntimeError):
    """CuPy's ``cupy.cuda.runtime.CUDARuntimeError(status)``: ``"<name>: <message>"``."""

    def __init__(self, status):
        self.status = status
        name, msg = _RUNTIME_ERRORS[status]
        super().__init__(f"{name}: {msg}")


class CUDADriverError(RuntimeError):
    """CuPy's ``cupy.cuda.driver.CUDADriverError(status)``: ``"<NAME>: <message>"``."""

    def __init__(self, status):
        self.status = status
        name, msg = _DRIVER_ERRORS[status]
        super().__init__(f"{name}: {msg}")


class CompileException(Exception):
    """CuPy's ``cupy.cuda.compiler.CompileException(msg, source, name, options)``."""

    def __init__(self, msg, source, name, options, backend="nvrtc"):
        self._msg, self.source, self.name, self.options, self.backend = (
            msg, source, name, options, backend)
        super().__init__(msg, source, name, options, backend)

    def __str__(self):
        return self._msg


class OutOfMemoryError(MemoryError):
    """CuPy's ``cupy.cuda.memory.OutOfMemoryError(size, total, limit=0)``."""

    def __init__(self, size, total, limit=0):
        self._size, self._total, self._limit = size, total, limit
        if limit == 0:
            msg = f"Out of memory allocating {size:,} bytes (allocated so far: {total:,} bytes)."
        else:
            msg = (f"Out of memory allocating {size:,} bytes (allocated so far: {total:,} "
                   f"bytes, limit set to: {limit:,} bytes).")
        super().__init__(msg)


# ---- devices --------------------------------------------------------------------------------
class _State(threading.local):
    current = 0  # CUDA's current device, per thread as in CUDA
    stack = ()  # Device.__enter__'s saved devices


_state = _State()
_count = [1]  # the number of stand-in GPUs


def getDeviceCount():
    return _count[0]


def getDevice():
    return _state.current


def setDevice(device):
    stats.set_device += 1
    if not 0 <= device < _count[0]:
        raise CUDARuntimeError(101)
    _state.current = device


def deviceSynchronize():
    """Everything runs synchronously on the host: nothing to wait for (refused while a stream
    captures)."""
    from . import capture

    capture.device_synchronize()


class Device:
    """``cupy.cuda.Device(i)``: ``with`` switches the current device and restores it on exit,
    calling ``setDevice`` as CuPy does (on entry only when it differs, on exit always)."""

    def __init__(self, device=None):
        self.id = getDevice() if device is None else int(device)

    def __enter__(self):
        current = getDevice()
        _state.stack = (*_state.stack, current)
        if self.id != current:
            setDevice(self.id)
        return self

    def __exit__(self, *exc):
        *rest, previous = _state.stack
        _state.stack = tuple(rest)
        setDevice(previous)

    def use(self):
        setDevice(self.id)

    def synchronize(self):
        """Nothing is pending on the host (refused while a stream captures)."""
        deviceSynchronize()

    @property
    def pci_bus_id(self):
        return f"0000:{self.id + 1:02x}:00.0"

    @property
    def compute_capability(self):
        return "90"

    def __eq__(self, other):
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self):
        return hash(self.id)

    def __repr__(self):
        return f"<CUDA Device {self.id}>"


def getDeviceProperties(device):
    if not 0 <= device < _count[0]:
        raise CUDARuntimeError(101)
    return {"name": b"Fake GPU", "major": 9, "minor": 0, "totalGlobalMem": 2 << 30,
            "multiProcessorCount": 132}


def memGetInfo():
    return (1 << 30, 2 << 30)


def runtimeGetVersion():
    return 13000


def driverGetVersion():
    return 13010


# ---- streams and events ---------------------------------------------------------------------
class Event:
    """``cupy.cuda.Event``: ``record`` notes the host time (work runs synchronously here)."""

    def __init__(self, block=False, disable_timing=False, interprocess=False):
        self._disable_timing = disable_timing
        self._time = None

    def record(self, stream=None):
        self._time = time.perf_counter()

    def synchronize(self):
        """Recorded work is complete when recorded."""

    @property
    def done(self):
        return True


def get_elapsed_time(start_event, end_event):
    """Milliseconds between two recorded events; CUDA's error for an unrecorded event or one
    made with ``disable_timing``."""
    for e in (start_event, end_event):
        if e._time is None or e._disable_timing:
            raise CUDARuntimeError(400)
    return (end_event._time - start_event._time) * 1e3


class Stream:
    """``cupy.cuda.Stream``: ``use()`` and ``with`` make it current; work is synchronous, or
    recorded while it captures (tests/fake_cupy/capture.py)."""

    def __init__(self, null=False, non_blocking=False, ptds=False, priority=None):
        self._ptr = 0 if null else id(self)
        self.ptr = self._ptr  # (an instance attribute in CuPy too: not in the class's names)
        self._non_blocking = bool(non_blocking)
        self._previous = []
        from . import nvmath

        nvmath.register(self)  # (a cuBLAS handle bound to it finds it by its pointer)

    def use(self):
        _streams.current = self
        return self

    def __enter__(self):
        self._previous.append(get_current_stream())
        return self.use()

    def __exit__(self, *exc):
        self._previous.pop().use()

    def synchronize(self):
        """Nothing is pending on the host; refused on a capturing stream."""
        from . import capture

        capture.synchronize(self)

    def record(self, event=None):
        event = Event() if event is None else event
        event.record(self)
        return event

    def wait_event(self, event):
        """Work is synchronous: nothing to wait for."""

    @property
    def done(self):
        from . import capture

        return capture.query(self)

    @property
    def is_non_blocking(self):
        return self._non_blocking

    def begin_capture(self, mode=None):
        from . import capture

        capture.begin(self, mode)

    def end_capture(self):
        from . import capture

        return capture.end(self)

    def is_capturing(self):
        from . import capture

        return capture.is_capturing(self)

    def __eq__(self, other):
        return isinstance(other, Stream) and other._ptr == self._ptr

    def __hash__(self):
        return hash(self._ptr)


Stream.null = Stream(null=True)


class _Streams(threading.local):
    current = Stream.null


_streams = _Streams()


def get_current_stream(device_id=-1):
    return _streams.current


# ---- memory pools (the device pools: tests/fake_cupy/pool.py) -----------------------------------
class PinnedMemoryPool:
    """The default pinned pool."""

    def __init__(self):
        self._freed = 0

    def free_all_blocks(self):
        self._freed += 1


def namespace(devices):
    """The ``cupy.cuda`` module (and its submodules) for ``devices`` stand-in GPUs, the
    current device 0."""
    _count[0] = devices
    _state.current, _state.stack = 0, ()
    _streams.current = Stream.null

    def module(name, **attrs):
        mod = types.ModuleType(name)
        mod.__dict__.update(attrs)
        return mod

    from . import capture, pool

    capture.reset()
    pool.reset()
    runtime = module("cupy.cuda.runtime", CUDARuntimeError=CUDARuntimeError,
                     getDevice=getDevice, setDevice=setDevice, getDeviceCount=getDeviceCount,
                     getDeviceProperties=getDeviceProperties, memGetInfo=memGetInfo,
                     runtimeGetVersion=runtimeGetVersion, driverGetVersion=driverGetVersion,
                     deviceSynchronize=deviceSynchronize, **capture.MODES, **capture.STATUS)
    allocators = {"using_allocator": pool.using_allocator, "get_allocator": pool.get_allocator,
                  "set_allocator": pool.set_allocator}
    memory = module("cupy.cuda.memory", OutOfMemoryError=OutOfMemoryError,
                    MemoryPool=pool.MemoryPool, MemoryPointer=pool.MemoryPointer,
                    CUDARuntimeError=CUDARuntimeError,
                    **{k: v for k, v in allocators.items() if k != "using_allocator"})
    pinned = module("cupy.cuda.pinned_memory", PinnedMemoryPool=PinnedMemoryPool)
    compiler = module("cupy.cuda.compiler", CompileException=CompileException)
    driver = module("cupy.cuda.driver", CUDADriverError=CUDADriverError)
    cuda = module("cupy.cuda", Device=Device, Event=Event, Stream=Stream,
                  get_elapsed_time=get_elapsed_time, get_current_stream=get_current_stream,
                  Graph=capture.Graph, MemoryPool=pool.MemoryPool, **allocators,
                  runtime=runtime, memory=memory, pinned_memory=pinned, compiler=compiler,
                  driver=driver)
    return {m.__name__: m for m in (cuda, runtime, memory, pinned, compiler, driver)}
