"""The Backend's math along axes, written once against ``self.xp``: the softmax family and
log-sum-exp, products of the others (exact with zeros), and sums of squares and powers scaled
by powers of two (var, std, vector norms that neither overflow nor underflow on the way).
A mixin of :class:`~.base.Backend`; a device backend may override any method with a kernel.
"""
import math


def reduced_size(shape, axis):
    """How many elements each slice along ``axis`` (None: all, an int or a tuple) holds."""
    if axis is None:
        return math.prod(shape)
    return math.prod(shape[a] for a in ((axis,) if isinstance(axis, int) else axis))


#: the longest slice whose product of others is built from mantissas and exponents: the
#: mantissas' product is at least 2^-n, a normal float64 up to n = 1021
_MANTISSA_RUN = 1000


def refined(xp, d, axis, n):
    """Deviations d = x - m1 from a rounded mean m1, refined by their own mean: d - mean(d),
    i.e. x - (m1 + mean(x - m1)). Exact 0 for a constant slice (its d are equal and exact),
    whatever order the sums run in; a slice whose mean(d) is inf or nan keeps d. In place
    where d is an array."""
    r = xp.sum(d, axis=axis, keepdims=True) / n
    d -= xp.where(xp.isfinite(r), r, 0)
    return d


def spread_of(xp, d, axis, n, ddof, keepdims):
    """var from deviations d = x - m1 about a rounded mean m1, the corrected two-pass form:
    (sum(d^2) - sum(d)^2 / N) / (N - ddof), at least 0. Algebraically d refined by its own
    mean (:func:`refined`), so a constant slice is exactly 0 whatever order the sums run in,
    at the cost of one sum of d rather than a pass that rewrites it. N - ddof <= 0 gives a
    sum / 0 (inf, or nan where the sum is 0). Squares d in place."""
    total = xp.sum(d, axis=axis, keepdims=keepdims)
    d *= d
    v = (xp.sum(d, axis=axis, keepdims=keepdims) - total * total / n) / max(n - ddof, 0)
    return xp.maximum(v, 0)


class AxisMath:
    """Reductions and row-wise math of :class:`~.base.Backend` (``self.xp`` is its array
    module)."""

    # ---- row-wise (axis) math -----------------------------------------------------------
    def logsumexp(self, x, axis, keepdims):
        """max + log(sum(exp(x - max))); an all -inf slice gives -inf, an inf gives inf, and
        an empty one log(0) = -inf (no max to shift by: the elements are none)."""
        xp = self.xp
        if x.size == 0:  # (0 - inf: log(0) without a divide-by-zero)
            return xp.sum(xp.exp(x), axis=axis, keepdims=keepdims) - xp.inf
        m = xp.max(x, axis=axis, keepdims=True)
        m = xp.where(xp.isfinite(m), m, 0)
        out = xp.log(xp.sum(xp.exp(x - m), axis=axis, keepdims=True)) + m
        return out if keepdims else xp.squeeze(out, axis=axis)

    def softmax(self, x, axis):
        xp = self.xp
        if x.size == 0:  # nothing to normalize (and no max to shift by)
            return xp.exp(x)
        e = xp.exp(x - xp.max(x, axis=axis, keepdims=True))
        return e / xp.sum(e, axis=axis, keepdims=True)

    def log_softmax(self, x, axis):
        """(x - max) - log(sum(exp(x - max))): not x - logsumexp(x), whose max + log(sum)
        rounds log(sum) away next to a large max (float32 [1e8, 1e8] would give [0, 0]). An
        infinite or nan max gives nan, as PyTorch (x - max is nan somewhere in the slice)."""
        xp = self.xp
        if x.size == 0:  # nothing to normalize (and no max to shift by)
            return x + 0.0
        z = x - xp.max(x, axis=axis, keepdims=True)
        return z - xp.log(xp.sum(xp.exp(z), axis=axis, keepdims=True))

    def prod_others(self, x, axis):
        """For each element, the product of the other elements along ``axis`` (exact with 0s).

        Built from exclusive prefix and suffix products, so no division is involved: of the
        mantissas m and, added, of the exponents e of x = m 2^e (``frexp``), put together by
        ``ldexp`` at the end, so no partial product overflows or underflows where the product
        of the others does not (float64 [nan, 1e-200, 1e200, 1e300]: the others of nan are
        1e300, where the suffix 1e300 * 1e200 overflowed). Scaling by 2^e is exact, so
        elsewhere these are the plain products' bits. (Past ``_MANTISSA_RUN`` factors the
        mantissas' product, at least 2^-n, could itself underflow: longer slices multiply
        plainly.) Where the others hold a 0 and are all finite, the product is 0 (the 0 * inf
        of [0, 0, 1e300, 1e300]); a nan or inf among them still gives 0 * inf = nan. float16
        and float32 are multiplied in float64 and rounded once.
        """
        xp = self.xp
        if x.dtype.kind == "f" and x.dtype.itemsize < 8:
            return self.prod_others(x.astype(xp.float64), axis).astype(x.dtype)
        n = x.shape[axis]
        if x.dtype.kind == "f" and n <= _MANTISSA_RUN:
            m, e = xp.frexp(x)
            m = self._exclusive(xp.cumprod, m, axis, 1)
            others = xp.ldexp(m[0] * m[1], self._exclusive(xp.cumsum, e, axis, 0).sum(axis=0))
        else:
            left, right = self._exclusive(xp.cumprod, x, axis, 1)
            others = left * right
        return xp.where(self._among_others(x == 0, axis) & ~self._among_others(
            ~xp.isfinite(x), axis), 0, others)

    def _exclusive(self, scan, x, axis, identity):
        """(prefix, suffix) of the running ``scan`` (cumprod, cumsum) of x along ``axis``,
        each leaving the element itself out, stacked on a new leading axis."""
        xp = self.xp
        n = x.shape[axis]
        lead = (slice(None),) * (axis % x.ndim)
        first = xp.full_like(x[lead + (slice(0, 1),)], identity)
        left = xp.concatenate([first, scan(x[lead + (slice(0, n - 1),)], axis=axis)], axis)
        tail = xp.flip(x[lead + (slice(1, n),)], axis)
        right = xp.flip(xp.concatenate([first, scan(tail, axis=axis)], axis), axis)
        return xp.stack([left, right])

    def _among_others(self, flag, axis):
        """Whether ``flag`` holds at some other element along ``axis``."""
        return self.xp.sum(flag, axis=axis, keepdims=True) - flag > 0

    def products_in_range(self, x, y, axis, keepdims):
        """Per product y of x along ``axis``: whether y is a normal number and so is every
        product of a subset of its factors, whatever order the product ran in (none passed
        through the subnormals, losing bits, or overflowed). Every such product lies between
        2^low and 2^high, low and high the sums of log2|x| over |x| < 1 and over |x| > 1;
        both must stay inside the normal exponents, by a margin of 1 for the sums' rounding
        (a zero factor makes low -inf, a nan or inf y fails on its own)."""
        xp = self.xp
        info = xp.finfo(x.dtype)
        lg = xp.log2(xp.abs(x))
        low = xp.sum(xp.minimum(lg, 0), axis=axis, keepdims=keepdims)
        high = xp.sum(xp.maximum(lg, 0), axis=axis, keepdims=keepdims)
        m = xp.abs(y)
        return ((m >= info.tiny) & (m <= info.max) & (low >= info.minexp + 1)
                & (high <= info.maxexp - 1))

    # ---- sums of squares and powers, scaled (no overflow or underflow on the way) --------------
    def pow2_scale(self, x, axis):
        """Per slice along ``axis`` (kept), a power of two s with s <= m < 2 s for m = max|x|:
        x / s is then exact and at most 2 in size. 1/2 where m is 0, 1 where it is inf or nan
        (whose sums carry them anyway), 1 for an empty ``x``."""
        xp = self.xp
        if x.size == 0:  # (no max of nothing: the sums are empty too)
            return xp.ones_like(xp.sum(x, axis=axis, keepdims=True))
        m = xp.max(xp.abs(x), axis=axis, keepdims=True)
        m = xp.where(xp.isfinite(m), m, 1)
        return xp.ldexp(xp.ones_like(m), xp.frexp(m)[1] - 1)

    def _extreme(self, a, axis, smallest):
        """Per slice along ``axis`` (kept), max(a) (min(a) with ``smallest``) of a >= 0; 1
        where that is 0, inf or nan, and for an empty ``a``."""
        xp = self.xp
        if a.size == 0:
            return xp.ones_like(xp.sum(a, axis=axis, keepdims=True))
        m = (xp.min if smallest else xp.max)(a, axis=axis, keepdims=True)
        return xp.where((m > 0) & (m < xp.inf), m, 1)

    def _floats(self, x):
        return x if x.dtype.kind == "f" else x.astype(self.xp.float64)

    def arctan_grad(self, g, x):
        """g / (1 + x^2); where x^2 overflows (the result may not: float32 1e20 gives 1e-40),
        (g / x) / (x + 1 / x), each branch on its own x values. The CUDA kernel's selection
        too (``arctan_bwd``), so the same bits on either device."""
        xp = self.xp
        xx = x * x
        if self.all_finite(xx):
            return g / (xx + 1)
        big = xp.isinf(xx)
        one = xp.ones_like(x)
        xb, xs = xp.where(big, x, one), xp.where(big, one, x)
        return xp.where(big, g / xb / (xb + 1 / xb), g / (xs * xs + 1))

    def _scaled_deviations(self, x, axis):
        """(x/s - mean(x/s), s) with s from :meth:`pow2_scale` (kept): x / s is exact and
        at most 2 in size, so its sum cannot overflow. The one-pass mean, as NumPy's: where
        that does not overflow, the plain deviations scaled by a power of two, so the same
        bits. Its rounding can leave a constant slice a 1-ulp residual (sum(a, a, a) / 3 !=
        a), which :meth:`center` refines away and :func:`spread_of` cancels."""
        xp = self.xp
        s = self.pow2_scale(x, axis)
        xs = x / s
        return xs - xp.sum(xs, axis=axis, keepdims=True) / reduced_size(x.shape, axis), s

    def center(self, x, axis):
        """x - mean(x) along ``axis`` (None: all axes; an int or a tuple), computed scaled
        (:meth:`_scaled_deviations`) with the mean refined once: d - mean(d), which makes a
        constant slice exactly 0 (not where mean(d) is inf or nan, an inf or nan in the
        slice, whose deviations stay x - mean as in the plain formula: [inf, 0] gives
        [nan, -inf])."""
        x = self._floats(x)
        if x.size == 0:  # (no mean of nothing to take)
            return x + 0
        d, s = self._scaled_deviations(x, axis)
        return refined(self.xp, d, axis, reduced_size(x.shape, axis)) * s

    def _spread(self, x, axis, ddof, keepdims):
        """(:func:`spread_of` the scaled deviations, s) with d, s from
        :meth:`_scaled_deviations` (s squeezed unless ``keepdims``): neither the mean nor the
        squares overflow, and scaling by a power of two is exact, so var = (v s) s is the
        plain value where that does not overflow."""
        x = self._floats(x)
        d, s = self._scaled_deviations(x, axis)
        v = spread_of(self.xp, d, axis, reduced_size(x.shape, axis), ddof, keepdims)
        return v, s if keepdims else self.xp.squeeze(s, axis=axis)

    def var(self, x, axis=None, ddof=0, keepdims=False):
        """sum((x - mean)^2) / (N - ddof), computed scaled (:meth:`_spread`)."""
        if x.dtype.kind == "c":  # (|x - mean|^2: NumPy's own)
            return self.xp.var(x, axis=axis, ddof=ddof, keepdims=keepdims)
        v, s = self._spread(x, axis, ddof, keepdims)
        return v * s * s

    def std(self, x, axis=None, ddof=0, keepdims=False):
        """sqrt(var), computed scaled (:meth:`_spread`): finite wherever the result is."""
        if x.dtype.kind == "c":
            return self.xp.std(x, axis=axis, ddof=ddof, keepdims=keepdims)
        v, s = self._spread(x, axis, ddof, keepdims)
        return self.xp.sqrt(v) * s

    def vector_norm(self, x, p, axis, keepdims):
        """(sum |x|^p)^(1/p) along ``axis`` for p != 0, inf, scaled so that neither the
        powers nor their sum overflow or underflow on the way.

        p = 2: s sqrt(sum (x/s)^2) with s from :meth:`pow2_scale`; |x/s| < 2, so the sum is
        at most 4 N, and scaling by 2^k is exact: bit for bit the plain formula wherever that
        is finite and nonzero. Other p: m (sum (|x|/m)^p)^(1/p) with m = max|x| (min|x| for
        p < 0): every term is at most 1 and the one at m is exactly 1, so the sum lies in
        [1, N] for any p. (A power of two only bounds |x/s| within a factor of 2, and 2^p
        overflows, or 2^-p underflows, once |p| passes the exponent range: float32 norm(x,
        200).) Where m is 0, inf or nan it is taken as 1 and the sum carries the 0, inf or
        nan (a 0 with p < 0 makes the sum inf and the norm 0)."""
        xp = self.xp
        x = self._floats(x)
        if p == 2:
            s = self.pow2_scale(x, axis)
            r = x / s
            out = xp.sqrt(xp.sum(r * r, axis=axis, keepdims=keepdims))
        else:
            a = xp.abs(x)
            s = self._extreme(a, axis, smallest=p < 0)
            out = self.power(xp.sum(self.power(a / s, p), axis=axis, keepdims=keepdims),
                             1.0 / p)
        return out * (s if keepdims else xp.squeeze(s, axis=axis))
