"""The CUDA back end of ``ad.compile``: one signature's step captured as one CUDA graph.

On CUDA the device records the kernels itself. The first two calls of a signature run the
function eagerly inside ``ad.cuda.graph(g, warmup=True)`` (kernels built, the graph's private
memory pool filled); the third runs it inside ``ad.cuda.graph(g)``, which captures every kernel
it launches (matrix products through gpuad's own cuBLAS handle) instead of running it, and then
launches ``g``. Each later call copies the arguments into the static inputs, runs the Python
that changes only host state (a scheduler's learning rate; a fused optimizer's step count and
its upload of changed settings, which the graph's kernels read on the device:
:func:`gpuad.backends.tracing.host`), and launches the graph: one launch per step, no Python
per op. Random draws use the device's generator, whose state lives on the GPU, so each replay
draws the next numbers, as eager calls would.

While these calls run, a :class:`GraphRecorder` notes what a replay depends on, as the CPU
tracer does: the tensors read that existed before (each must keep its array), the ``.grad``
set, the Python state read (train/eval), the generators drawn from (a new seed means a new
capture). And what a replay cannot repeat: a read of values on the host, Python that computes
with numbers of its own on every call (an optimizer without a fused CUDA update,
``ad.manual_seed``), CPU tensors, tensors kept in Python state, anything the capture refuses.
Each sends the signature to eager calls, with one warning.
"""
import numpy as np

from ..cuda_graph import CUDAGraph, CUDAGraphError
from ..cuda_graph import graph as graph_block
from ..devices import get_default_device
from ..tensor import Tensor
from . import calls
from .program import Program
from .steps import Busy
from .swaps import GRAD
from .tracer import Tracer

#: eager calls inside the graph's warm-up block before the capture
WARMUPS = 2


def overlaps(a, b):
    """Whether CuPy arrays ``a`` and ``b`` may share memory (their address ranges meet)."""
    if not a.size or not b.size:
        return False
    (lo_a, hi_a), (lo_b, hi_b) = _extent(a), _extent(b)
    return lo_a < hi_b and lo_b < hi_a


def _extent(a):
    lo = hi = a.data.ptr
    for n, s in zip(a.shape, a.strides):
        if s < 0:
            lo += s * (n - 1)
        else:
            hi += s * (n - 1)
    return lo, hi + a.itemsize


class GraphRecorder(Tracer):
    """What one warm-up or capturing call of a compiled function on CUDA reads and does (see
    the module's text); ``capturing``: host-only calls wait for the graph's launches."""

    follows_cpu = False

    def __init__(self, name, fallback, capturing):
        super().__init__(name, fallback)
        self.capturing = capturing
        self.hosts = []  # (fn, args): the host-only calls each launch is preceded by
        self.generators = []  # (backend, generator) drawn from
        self.seen = set()

    def read(self, t, a):
        if id(t) in self.born:
            return a
        if isinstance(a, np.ndarray):
            self.invalidate(f"it reads a CPU tensor (shape {a.shape}) made before it; a CUDA "
                            "graph replays only the GPU's work: move it to the GPU, or pass "
                            "it as an argument")
            return a
        if id(t) not in self.seen:
            self.seen.add(id(t))
            if id(t) in self.arguments or any(overlaps(a, b) for b in self.argument_arrays):
                self.invalidate("it reads one of its tensor arguments (or memory one shares) "
                                "also from outside; such calls run eagerly")
            self.discovered.append((t, a, a))
        return a

    def opaque(self, fn, args):
        if not self.paused:
            reason = ("it runs Python that computes with numbers of its own on every call "
                      f"({getattr(fn, '__qualname__', fn)}: an optimizer without a fused CUDA "
                      "update, or ad.manual_seed), which a CUDA graph would not repeat")
            if self.capturing:  # (before it changes any state: the call then runs eagerly)
                raise CUDAGraphError(reason)
            self.invalidate(reason)
        return fn(*args)

    def host(self, fn, args):
        if self.capturing and not self.paused:
            if any(fn == f for f, _ in self.hosts):  # (uploads of one buffer: the last wins)
                self.invalidate(f"it calls {getattr(fn, '__qualname__', fn)} twice (an "
                                "optimizer stepped twice): each launch would see only the "
                                "last settings")
            self.hosts.append((fn, args))  # (run before each launch, this call's included)
            return None
        return fn(*args)

    def draw(self, fn, args):
        backend = getattr(fn, "__self__", None)
        if backend is not None and not self.paused:
            if all(backend._rng is not rng for _, rng in self.generators):
                self.generators.append((backend, backend._rng))
        return fn(*args)

    def host_read(self, tensor, what, guard=True, depth=3):
        super().host_read(tensor, what, guard, depth)

    def own_read(self, tensor, what, guard):
        if guard:  # (gpuad's own ``.array``: device memory, whose kernels are captured)
            self.invalidate(f"gpuad reads a tensor's values on the host inside it ({what}), "
                            "which a CUDA graph cannot capture")


class GraphedProgram(Program):
    """The replay of a captured call: static inputs, host-only calls, one graph launch."""

    def __init__(self, recorder, graph, inputs, device):  # (no CPU steps: Program's fields)
        self.graph, self.inputs, self.device = graph, inputs, device
        self.tensors = [(t, a) for t, a, _ in recorder.discovered]
        read = {id(t) for t, _ in self.tensors}
        self.entry_grads = [(t, g, g is not None and id(g) in read)
                            for t, g in recorder.entry_grads.values()]
        self.grads = [(t, GRAD.__get__(t)) for t in recorder.grads_written.values()]
        self.states = list(recorder.states.values())
        self.flags = [(t, t._rg) for t, _ in self.tensors]
        self.hosts, self.generators = recorder.hosts, recorder.generators

    @staticmethod
    def shares(a, b):
        return overlaps(a, b)

    def stale(self, leaves=()):
        for backend, rng in self.generators:
            if backend._rng is not rng:
                return "the generator it draws from was seeded again"
        return super().stale(leaves)

    def run(self, arrays):
        with self.device.backend.on_device():  # (the copies run on the graph's GPU)
            for buf, a in zip(self.inputs, arrays):
                buf[...] = a
        for fn, args in self.hosts:
            fn(*args)
        self.graph.replay()
        for t, g in self.grads:
            GRAD.__set__(t, g)

    def copy_back(self, arrays):
        with self.device.backend.on_device():
            for j, final in self.changed:
                arrays[j][...] = final


class _Pending:
    """A capture in preparation: its graph, static inputs, and the warm-ups done."""

    def __init__(self, leaves, device):
        self.graph, self.device, self.warmups = CUDAGraph(), device, 0
        statics = {}  # (an argument given twice is one static input)
        with device.backend.on_device():
            self.inputs = [statics.setdefault(id(v), Tensor(v._a.copy(), v._dev, None, v._rg))
                           if isinstance(v, Tensor) else v for v in leaves]


def device_of(leaves, seen):
    """The CUDA device of a call: its first CUDA tensor argument's, else the one a traced
    run saw (``seen``), else the default device if it is a GPU; None: not a CUDA call."""
    for v in leaves:
        if isinstance(v, Tensor) and v._dev.type == "cuda":
            return v._dev
    if seen is not None:
        return seen
    default = get_default_device()
    return default if default.type == "cuda" else None


def prepare(entry, leaves, rebuild, device):
    """A call of ``entry`` (a compiled function's signature) on ``device`` with no graph to
    replay: a warm-up, or the capture and the first launch."""
    owner = entry.owner
    arrays = [v._a for v in leaves if isinstance(v, Tensor)]
    distinct = list({id(v): v._a for v in leaves if isinstance(v, Tensor)}.values())
    if any(a.__class__ is np.ndarray for a in arrays):
        entry.go_eager("it takes both CPU and CUDA tensors; a CUDA graph replays only the "
                       "GPU's work")
        owner.eager_calls += 1
        return calls.call(owner.fn, rebuild(leaves))
    if any(overlaps(a, b) for i, a in enumerate(distinct) for b in distinct[i + 1:]):
        owner.eager_calls += 1
        owner.note("its tensor arguments share memory (views of one another): such calls run "
                   "eagerly (copied into static inputs they would no longer share it)")
        return calls.call(owner.fn, rebuild(leaves))
    pending = entry.pending
    if pending is None or pending.device is not device:
        pending = entry.pending = _Pending(leaves, device)
    else:
        with device.backend.on_device():
            for s, v in zip(pending.inputs, leaves):
                if isinstance(v, Tensor):
                    s._a[...] = v._a
    capturing = pending.warmups >= WARMUPS
    if capturing:  # slack: as much again as the warm-ups took, cached for the capture's own
        with graph_block(pending.graph, device=device, warmup=True):  # order of allocations
            device.backend.xp.empty(max(pending.graph.pool().total_bytes(), 1), np.uint8)
    recorder = GraphRecorder(calls.name(owner.fn), owner.fallback, capturing)
    recorder.argument_arrays = arrays
    recorder.arguments = {id(v): s for v, s in zip(leaves, pending.inputs)
                          if isinstance(v, Tensor)}
    before = {id(s): (s._a, s._ver[0]) for s in pending.inputs if isinstance(s, Tensor)}
    try:
        recorder.__enter__()
    except Busy:
        owner.eager_calls += 1
        return calls.call(owner.fn, rebuild(leaves))
    try:
        try:
            with graph_block(pending.graph, device=device, warmup=not capturing):
                result = calls.call(owner.fn, rebuild(pending.inputs))
        finally:
            recorder.__exit__(None, None, None)
    except CUDAGraphError as exc:
        if not capturing:
            raise
        return _instead(entry, recorder, leaves, rebuild, f"the capture was refused: {exc}")
    except BaseException:
        if capturing:
            _restore_grads(recorder)
        raise
    owner.traces += 1
    # what the function changed in its arguments (in place, or given new data)
    args = [(v, s) for v, s in zip(leaves, pending.inputs) if isinstance(v, Tensor)]
    changed = [(j, s._a) for j, (_, s) in enumerate(args)
               if s._a is not before[id(s)][0] or s._ver[0] != before[id(s)][1]]
    out, rebuild_out = calls.flatten(result)
    kept = calls.escaped(recorder, pending.inputs, out)
    del result
    if not capturing:
        pending.warmups += 1
        with pending.device.backend.on_device():
            for j, final in changed:
                args[j][0]._a[...] = final
        if recorder.invalid is not None or kept:
            entry.go_eager(recorder.invalid or kept)
        # (copied out of the graph's pool, whose memory the capture needs)
        return rebuild_out([Tensor(v._a.copy(), v._dev) if isinstance(v, Tensor) else v
                            for v in out])
    if recorder.invalid is not None or kept:
        return _instead(entry, recorder, leaves, rebuild, recorder.invalid or kept)
    entry.pending = None
    program = GraphedProgram(recorder, pending.graph, [s._a for _, s in args], pending.device)
    program.outputs = ([(v._a, v._dev) if isinstance(v, Tensor) else (v, None) for v in out],
                       rebuild_out)
    program.changed = changed
    entry.programs = [program, *entry.programs][:entry.kept_programs]
    program.run(arrays)  # (the graph's first launch: this call's step)
    program.copy_back(arrays)
    return entry.outputs(program.outputs)


def _instead(entry, recorder, leaves, rebuild, reason):
    """A capture that cannot be replayed ran no kernel: put back the ``.grad`` it set, and run
    this call (and the signature's later ones) eagerly."""
    _restore_grads(recorder)
    entry.pending = None
    entry.go_eager(reason)
    entry.owner.eager_calls += 1
    return calls.call(entry.owner.fn, rebuild(leaves))


def _restore_grads(recorder):
    for t, g in recorder.grads_before.values():
        GRAD.__set__(t, g)
