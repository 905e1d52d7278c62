"""Checks of array values (indices and labels in range) and a count kept on the device, for
every backend: the check is computed on the backend's arrays and raises at once through
:meth:`ValueChecks.require`, which a device backend overrides to report at its next host read
(gpuad/backends/deferred.py), so that no check reads a device value back on the hot path."""


class ValueChecks:
    """Part of :class:`~gpuad.backends.base.Backend` (its ``xp`` is the array module)."""

    def require(self, bad, kind, message):
        """Raise ``kind(message())`` when the 0-d bool array ``bad`` (a check computed on this
        backend's arrays) is true; here at once. A device backend defers the read to its next
        host read instead (:mod:`.deferred`). ``message`` is a callable, so that a check that
        passes builds no text (these checks run on every call of a loss or an index)."""
        if bad:
            raise kind(message())

    def require_in_range(self, a, low, high, kind, message, skip=None):
        """:meth:`require` that the integers ``a`` lie in [low, high), except where the bool
        array ``skip`` is set."""
        if a.size:
            bad = (a < low) | (a >= high)
            self.require(self.xp.any(bad if skip is None else bad & ~skip), kind, message)

    def check_indices(self, index, size, axis):
        """IndexError when an integer index array reaches outside an axis of ``size`` (CuPy
        wraps such indices around instead of raising), through :meth:`require`."""
        self.require_in_range(
            index, -size, size, IndexError, lambda: f"gpuad: index out of range for axis "
            f"{axis} of size {size} (an index array of shape {index.shape}, {index.dtype}); "
            f"indices must be in [-{size}, {size})")

    def mean_divisor(self, ignored, dtype):
        """The divisor of a mean over the rows not ``ignored`` (bool, one per row), without
        reading their number back to the host: ``(count, empty)``, 0-d arrays of ``dtype``,
        count = max(rows counted, 1) and empty = nan where no row counts, else 0, so that
        total / count + empty is the mean and g / count its finite gradient."""
        xp = self.xp
        kept = xp.sum(~ignored)
        count, empty = xp.maximum(kept, 1), xp.where(kept == 0, float("nan"), 0.0)
        # (0-d arrays, kept as they are: a compiled function's tracer follows its own kind)
        return tuple((v if isinstance(v, xp.ndarray) else xp.asarray(v)).astype(dtype)
                     for v in (count, empty))
