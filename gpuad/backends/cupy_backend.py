"""The CUDA backend: the Backend interface implemented with CuPy.

This module is imported only when a CUDA tensor is made. The composite activations and the
derivatives of the elementwise ops run in one kernel each, built from ``kernels/`` (see
:mod:`.cupy_kernels`); other dtypes fall back to the generic array code.
"""
import contextlib
import functools
import math

import cupy
import cupyx
import numpy as np
from cupyx.scipy import special as _special

from . import capture_blas, cupy_kernels
from .base import Backend
from .cuda_errors import is_out_of_memory
from .deferred import PendingChecks
from .kernel_table import OPTIM, ROWWISE, TYPES, RowMode, backend_elementwise, kernel_rows


def _run_on(backend, fn, args, kwargs):
    """``fn(*args, **kwargs)`` with the backend's device as CuPy's current device, where
    kernels launch and arrays are allocated (so cuda:1 tensors stay on GPU 1 whatever device is
    current). The device is switched only when another is current (``with Device(i)`` always
    sets the device back on leaving, a ``setDevice`` per call, and every backend call comes
    here).
    Running out of memory, in CuPy's pool or in a CUDA library's workspace, raises
    :class:`~gpuad.errors.OutOfMemoryError` with the numbers."""
    try:
        if cupy.cuda.runtime.getDevice() == backend.index:
            return fn(*args, **kwargs)
        with backend.cuda_device:
            return fn(*args, **kwargs)
    except Exception as exc:
        if is_out_of_memory(exc, cupy.cuda.memory.OutOfMemoryError):
            raise out_of_memory(backend.cuda_device, exc) from exc
        raise


def _on(backend, fn):
    """``fn`` (an array function or a bound method) made to run on ``backend``'s device."""

    def call(*args, **kwargs):
        return _run_on(backend, fn, args, kwargs)

    call.__name__ = getattr(fn, "__name__", "call")
    return call


def _on_its_device(method):
    """A method of the backend made to run on its device (the fused kernels' entry points:
    they are looked up on the class, where a backend without them has None)."""

    @functools.wraps(method)
    def run(self, *args, **kwargs):
        return _run_on(self, method, (self, *args), kwargs)

    run.on_its_device = True
    return run


def out_of_memory(device, exc):
    """The error for a failed allocation on ``device``: what was asked for, what the device
    and CuPy's pool hold, and what to do."""
    from ..errors import OutOfMemoryError

    with device:  # (the numbers of this device, and its pool, not the current one's)
        free, total = cupy.cuda.runtime.memGetInfo()
        pool = cupy.get_default_memory_pool()
        used, held = pool.used_bytes(), pool.total_bytes()
    gib = 2.0 ** 30
    return OutOfMemoryError(
        f"gpuad: CUDA out of memory on cuda:{device.id}: {exc}. The device has "
        f"{free / gib:.2f} GiB free of {total / gib:.2f} GiB; CuPy's pool uses "
        f"{used / gib:.2f} GiB and caches {(held - used) / gib:.2f} GiB more. Free tensors you "
        "no longer need (and call ad.cuda.empty_cache()), or use smaller batches")


class CupyBackend(Backend):
    name = "cupy"

    def __init__(self, index):
        super().__init__(cupy)
        self.index = index
        self.cuda_device = cupy.cuda.Device(index)
        self.checks = PendingChecks(cupy, f"cuda:{index}")
        self._forwards_by_kernel()
        # (inside a CUDA-graph capture, through gpuad's own cuBLAS handle: CuPy's refuses)
        self.matmul = functools.partial(capture_blas.matmul, cupy)
        for name in Backend.array_methods():
            method = getattr(self, name)
            if not getattr(method, "on_its_device", False):
                setattr(self, name, _on(self, method))
        with self.cuda_device:
            self._rng = cupy.random.default_rng()
        self.kernels = cupy_kernels.Kernels()

    @contextlib.contextmanager
    def on_device(self):
        """A context with this backend's device current (switched only when another is), in
        which running out of memory raises :class:`~gpuad.errors.OutOfMemoryError`."""
        try:
            if cupy.cuda.runtime.getDevice() == self.index:
                yield
            else:
                with self.cuda_device:
                    yield
        except Exception as exc:
            if is_out_of_memory(exc, cupy.cuda.memory.OutOfMemoryError):
                raise out_of_memory(self.cuda_device, exc) from exc
            raise

    # ---- fused elementwise kernels (kernels/elementwise.cuh) --------------------------------
    def _forwards_by_kernel(self):
        """Each forward method that some row computes with ``<kernel>_fwd``, made to launch that
        kernel for float data (rows sharing a method are told apart by their fixed ``args``:
        gelu's form), and the base's method otherwise."""
        rows_of = {}
        for row in kernel_rows():
            if row.kernel_forward:
                rows_of.setdefault(row.forward, {})[row.args] = row
        for method, rows in rows_of.items():
            setattr(self, method, self._forward_by_kernel(method, rows))

    def _forward_by_kernel(self, method, rows):
        generic = getattr(super(), method, None) or getattr(cupy, method)
        n_args = len(next(iter(rows)))

        def run(x, *rest):
            row = rows.get(rest[:n_args])
            if row is None or x.dtype not in TYPES:
                return generic(x, *rest)
            nums = tuple(float(p) for p in rest[n_args:])
            return self.kernels.elementwise(f"{row.kernel}_fwd", x.dtype, 1, len(nums))(
                x, *nums)

        run.__name__ = run.__qualname__ = method
        run.__doc__ = f"``{method}`` by its row's kernel of kernels/elementwise.cuh."
        return run

    @_on_its_device
    def fused_unary_grad(self, row, g, s, params):
        """The rule of the elementwise op ``row`` applied to the output gradient ``g`` and the
        saved ``s`` (input or output) in one kernel (``<row.kernel>_bwd``); the base's
        raw-array rule where the row has no kernel; None where neither applies."""
        if row.kernel is None or g.dtype != s.dtype or g.dtype not in TYPES:
            return super().fused_unary_grad(row, g, s, params)
        nums = tuple(float(p) for p in params)
        return self.kernels.elementwise(f"{row.kernel}_bwd", g.dtype, 2, len(nums))(
            g, s, *nums)

    def arctan_grad(self, g, x):
        """g / (1 + x^2) by the ``arctan_bwd`` kernel (the base's selection of forms, in one
        pass) where it applies, else the base's."""
        if g.dtype != x.dtype or g.dtype not in TYPES:
            return super().arctan_grad(g, x)
        return self.kernels.elementwise("arctan_bwd", g.dtype, 2)(g, x)

    @_on_its_device
    def warmup(self):
        """Build (compile, or load from CuPy's cache) every kernel the ops launch, for every
        dtype: the table's elementwise kernels (``backend_elementwise``, the same list the
        launches come from) and the row-wise and optimizer kernels; returns how many."""
        count = 0
        for function, dtype, n_inputs, n_params in backend_elementwise():
            one = cupy.zeros(1, dtype=dtype)
            self.kernels.elementwise(function, dtype, n_inputs, n_params)(
                *(one,) * n_inputs, *(1.0,) * n_params)
            count += 1
        for kernel in ROWWISE + OPTIM:  # compiled at their first get
            for dtype in TYPES:
                self.kernels.rows.get(kernel, dtype)
                count += 1
        return count

    # ---- row-wise kernels (kernels/rowwise.cu) ---------------------------------------------
    def _as_rows(self, x, axes):
        """``x`` with ``axes`` moved last as a C-contiguous (rows, cols) array (the kernels
        index by hand: a copy is made here when the layout needs one), and the moved shape."""
        moved = cupy.transpose(x, [i for i in range(x.ndim) if i not in axes] + list(axes))
        cols = 1
        for a in axes:
            cols *= x.shape[a]
        rows = x.size // cols
        return cupy.ascontiguousarray(moved).reshape(rows, cols), moved.shape

    def _row_mode(self, mode, x, axes):
        """Softmax, log_softmax or logsumexp (one value per row) along ``axes`` (``mode``);
        None where no kernel applies (or where a few long rows would leave most of the GPU
        idle: CuPy's own reductions split those)."""
        if x.dtype not in TYPES or x.size == 0:
            return None
        x2, moved = self._as_rows(x, axes)
        rows, cols = x2.shape
        if rows < 64 and cols > 1 << 16:
            return None
        out = cupy.empty(rows if mode == RowMode.LOGSUMEXP else x2.shape, dtype=x.dtype)
        kernel, grid, block = cupy_kernels.rows_launch(rows, cols, "softmax")
        self.kernels.rows.get(kernel, x.dtype)(
            grid, block, (np.int32(mode), x2, out, np.int64(rows), np.int64(cols)))
        if mode == RowMode.LOGSUMEXP:
            return out.reshape(moved[:x.ndim - len(axes)])
        return cupy.moveaxis(out.reshape(moved), -1, axes[0])

    def softmax(self, x, axis):
        out = self._row_mode(RowMode.SOFTMAX, x, (axis % x.ndim,))
        return super().softmax(x, axis) if out is None else out

    def log_softmax(self, x, axis):
        out = self._row_mode(RowMode.LOG_SOFTMAX, x, (axis % x.ndim,))
        return super().log_softmax(x, axis) if out is None else out

    def logsumexp(self, x, axis, keepdims):
        if isinstance(axis, int):
            axis = (axis,)
        axes = tuple(range(x.ndim)) if axis is None else tuple(a % x.ndim for a in axis)
        out = self._row_mode(RowMode.LOGSUMEXP, x, axes) if axes else None
        if out is None:
            return super().logsumexp(x, axis, keepdims)
        if keepdims:
            out = out.reshape(tuple(1 if i in axes else n for i, n in enumerate(x.shape)))
        return out

    @_on_its_device
    def fused_softmax_grad(self, mode, g, y, x, axes):
        """The derivative rule of softmax, log_softmax or logsumexp (``mode``, a
        :class:`~.kernel_table.RowMode`) along ``axes`` in one kernel: dx from the output
        gradient ``g``, the output ``y`` and (for logsumexp) the input ``x``; None where no
        kernel applies."""
        ref = x if mode == RowMode.LOGSUMEXP else y
        if (ref.dtype not in TYPES or g.dtype != ref.dtype or y.dtype != ref.dtype
                or ref.size == 0):
            return None
        if mode == RowMode.LOGSUMEXP and y.size * math.prod(ref.shape[a] for a in axes) != ref.size:
            return None
        rows_hint = ref.size // max(1, math.prod(ref.shape[a] for a in axes))
        if rows_hint < 64 and ref.size // max(1, rows_hint) > 1 << 16:
            return None
        base, moved = self._as_rows(ref, axes)
        rows, cols = base.shape
        if mode == RowMode.LOGSUMEXP:  # g and y hold one value per row, in the rows' order
            g2 = cupy.ascontiguousarray(cupy.broadcast_to(g, y.shape)).reshape(rows)
            y2 = cupy.ascontiguousarray(y).reshape(rows)
            x2 = base
        else:
            g2 = self._as_rows(cupy.broadcast_to(g, y.shape), axes)[0]
            y2, x2 = base, base
        dx = cupy.empty((rows, cols), dtype=ref.dtype)
        kernel, grid, block = cupy_kernels.rows_launch(rows, cols, "softmax_backward")
        self.kernels.rows.get(kernel, ref.dtype)(
            grid, block, (np.int32(mode), g2, y2, x2, dx, np.int64(rows), np.int64(cols)))
        keep = [i for i in range(ref.ndim) if i not in axes]
        inverse = sorted(range(ref.ndim), key=(keep + list(axes)).__getitem__)
        return cupy.transpose(dx.reshape(moved), inverse)

    @_on_its_device
    def fused_cross_entropy(self, logits, labels, ignore_index, smoothing):
        """Softmax cross-entropy of (N, C) ``logits`` against int64 ``labels`` (N,) in one
        pass: ``(loss, dlogits)``, the per-row loss ``-sum(q log softmax)`` with the target
        ``q = (1 - smoothing) onehot + smoothing / C``, and ``softmax - q`` (the logits'
        gradient for an upstream gradient of 1 per row); rows labelled ``ignore_index`` give
        0 and 0. Deterministic (no atomics). None where no kernel applies."""
        if (logits.dtype not in TYPES or logits.ndim != 2 or logits.size == 0
                or labels.shape != logits.shape[:1]):
            return None
        x = cupy.ascontiguousarray(logits)
        lab = cupy.ascontiguousarray(labels, dtype=cupy.int64)
        rows, cols = x.shape
        loss = cupy.empty(rows, dtype=x.dtype)
        dlogits = cupy.empty_like(x)
        kernel, grid, block = cupy_kernels.rows_launch(rows, cols, "cross_entropy")
        self.kernels.rows.get(kernel, x.dtype)(
            grid, block, (x, lab, np.int64(ignore_index), np.float64(smoothing), loss,
                          dlogits, np.int64(rows), np.int64(cols)))
        return loss, dlogits

    @_on_its_device
    def fused_optimizer_step(self, kind, arrays, hyper):
        """One launch of ``kernels/optim.cu``'s ``<kind>_update`` over flat buffers (``arrays``:
        parameters, gradients and the state, all of one dtype) with the hyper-parameters in
        the device array ``hyper``; no launch for empty buffers (a group of zero-size
        parameters)."""
        p = arrays[0]
        n = p.size
        if n == 0:  # (nothing to update: no launch at all)
            return
        self.kernels.rows.get(f"{kind}_update", p.dtype)(
            (min(-(-n // 256), 4096),), (256,), (*arrays, hyper, np.int64(n)))

    def require(self, bad, kind, message):
        """Queue the device-side check ``bad`` (no host read): it raises at the next
        :meth:`to_numpy` or :meth:`synchronize` of this device (:mod:`.deferred`)."""
        self.checks.add(bad, kind, message)

    def to_numpy(self, a):
        """A NumPy copy of ``a``, after raising the error of a failed queued check."""
        self.checks.raise_pending()
        return cupy.asnumpy(a)

    def synchronize(self):
        """Wait for the device's queued work; raise the error of a failed queued check."""
        self.cuda_device.synchronize()
        self.checks.raise_pending()

    def all_finite(self, a):
        """One reduction kernel on the device; only its bool comes back to the host."""
        if a.dtype.kind not in "fc":
            return True
        return self.kernels.all_finite(a)

    def errstate(self):
        return contextlib.nullcontext()

    def _erf(self, x):
        return _special.erf(x)

    def _scatter_add(self, out, index, values):
        cupyx.scatter_add(out, index, values)

