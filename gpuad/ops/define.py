"""How an elementwise op is built from its row (the rows are in :mod:`.elementwise`).

A unary op is one :class:`Unary` row: its name, the backend method computing it, the derivative
rule and what that reads, the CUDA kernel and the raw-array path that run the same rule faster,
whether it is a Tensor method, and a line of math and a doctest example for its docstring.
:func:`unary` registers the row (the backend builds its kernels and binds its forward from the
registered rows, see :mod:`gpuad.backends.kernel_table`) and returns the op. :func:`binary`
builds a two-input op with broadcasting from its two rules.

For an elementwise op the Jacobian is diagonal, so the same rules serve as its JVP
(``jvp=DIAGONAL``: the tangent ``t`` in place of ``g``, summed over the inputs; tangents carry
a leading batch axis, which the rules broadcast over). Rules are written with gpuad ops, so
they are differentiable again.
"""
import textwrap
from dataclasses import dataclass

from ..autograd.forward import DIAGONAL
from ..autograd.grad_mode import active, mode
from ..autograd.node import Op
from ..autograd.record import needs_grad, record, record1
from ..backends import kernel_table
from ..backends.base import LARGE
from ..tensor import Tensor
from ._args import operands, plain, to_tensor
from .registry import public

_READS = {"x": "the input x", "y": "the output y", None: "neither x nor y"}


@dataclass(frozen=True, eq=False)
class Unary:
    """One elementwise op of one input, whole.

    ``rule(g, s, *params)`` is the VJP (and, the Jacobian being diagonal, the JVP): the output
    gradient ``g`` times the derivative, from ``s``, the input x (``reads="x"``), the output y
    (``"y"``) or nothing (None, then ``rule(g, *params)``). ``forward`` is the backend method
    computing the op (default: ``name``; an array-module ufunc of that name needs no backend
    code), called as ``forward(x, *args, *params)``. ``kernel`` names the functions
    ``<kernel>_bwd`` (the rule) and, with ``kernel_forward``, ``<kernel>_fwd`` (the forward) of
    ``kernels/elementwise.cuh`` that the CUDA backend launches. ``fast(backend, g, s, *params)``
    is the rule on raw arrays (same operations, same bits), which the CPU runs where nothing
    records. ``quiet``: NumPy warns on this forward where PyTorch does not (log(0)); silence it.
    ``example``: the lines of a doctest of the op (``>>>`` statements and what they print),
    appended to its docstring (:func:`example_section`).
    """

    name: str
    rule: object
    reads: str | None = "x"
    doc: str = ""
    forward: str = ""
    params: tuple = ()
    args: tuple = ()
    kernel: str | None = None
    kernel_forward: bool = False
    fast: object = None
    method: bool = True
    quiet: bool = False
    example: tuple = ()
    #: the op built from the row, ``op(x, *params)`` (set by :func:`unary`)
    op: object = None

    def __post_init__(self):
        if not self.forward:
            object.__setattr__(self, "forward", self.name)

    def backend_forward(self, backend, x, *params):
        """The op's forward on raw array ``x``, by ``backend``."""
        return getattr(backend, self.forward)(x, *self.args, *params)

    def docstring(self):
        """The op's docstring, from the row."""
        args = ", ".join(("x",) + self.params)
        kernel = (f" On CUDA the derivative runs as one kernel (``{self.kernel}_bwd`` of "
                  "kernels/elementwise.cuh)." if self.kernel else "")
        return f"{self.name}({args}): {self.doc}.\n\n" + textwrap.fill(
            "Elementwise, on a tensor of any shape (or an array-like); the result is on x's "
            "device, with x's dtype where x is floating (integer and bool x follow NumPy's type "
            f"rules). The derivative is computed from {_READS[self.reads]}.{kernel}", 88
        ) + example_section(self.example)


def example_section(lines):
    """The example ending an op's docstring, from ``lines``: a doctest's ``>>>`` statements
    and the output each prints, one line each (empty: none)."""
    if not lines:
        return ""
    return "\n\n" + "\n".join(lines)


def unary(name, rule, reads="x", *, register=True, **fields):
    """The op ``name(x, *params)`` of the row ``Unary(name, rule, reads, **fields)``, made
    public (and a Tensor method, unless ``method=False``) unless ``register`` is False (an
    op behind a public function that checks its parameters)."""
    row = Unary(name, rule, reads, **fields)
    kernel_table.register(row)
    op = Op(name, (_fusable(row) if (row.kernel or row.fast) else rule,), jvp=DIAGONAL,
            save_out=reads == "y")
    saved_x = reads == "x"
    forward_name, args = row.forward, row.args

    def with_params(x, *params):
        if not isinstance(x, Tensor):
            x = to_tensor(x, name)
        a, backend = x._a, x._dev._backend
        out = getattr(backend if a.size < LARGE else backend.large, forward_name)(
            a, *args, *params)
        return record1(op, x, out, ((x,) if saved_x else ()) + params)

    def reading_x(x):
        if not isinstance(x, Tensor):
            x = to_tensor(x, name)
        a, backend = x._a, x._dev._backend
        out = getattr(backend if a.size < LARGE else backend.large, forward_name)(a)
        return record1(op, x, out, (x,))

    def reading_nothing(x):
        if not isinstance(x, Tensor):
            x = to_tensor(x, name)
        a, backend = x._a, x._dev._backend
        out = getattr(backend if a.size < LARGE else backend.large, forward_name)(a)
        return record1(op, x, out, ())

    # (the shortest path for the op: no *params to pack where it has none)
    forward = with_params if row.params or args else reading_x if saved_x else reading_nothing
    forward.__name__ = forward.__qualname__ = name
    forward.__doc__ = row.docstring()
    forward.op, forward.row, forward.math = op, row, row.doc
    object.__setattr__(row, "op", forward)
    if register:
        public(forward, method=row.method)
    return forward


def _fusable(row):
    """``row.rule(g, s, *params)`` run by the backend in one step where it can (a CUDA kernel,
    or the CPU's raw-array rule), as a node of its own whose derivatives are ordinary
    differentiable code (so ``create_graph`` works on the fast path); elsewhere the rule
    itself, as composed ops. A backend whose fast rules only save Python per op (the CPU:
    ``fused_grad_nodes`` False) runs them only where nothing records, since the composed rule
    differentiates again faster than a fused node."""
    rule = row.rule
    grad_op = None

    def vjp(g, s, *params):
        nonlocal grad_op
        backend = g._dev._backend
        if g._a.size >= LARGE:
            backend = backend.large
        fused = backend.fused_unary_grad
        if fused is not None and s.__class__ is Tensor and (
                backend.fused_grad_nodes or not (mode.enabled or (active[0] and (
                    mode.levels or mode.tapes or mode.watchers)))):  # (not the anomaly mode)
            out = fused(row, g._a, s._a, params)
            if out is not None:
                if grad_op is None:
                    grad_op = Op(f"{row.name}_grad", (
                        lambda gg, g, s, *p: vjp(gg, s, *p),  # the rule is linear in g
                        lambda gg, g, s, *p: _rule_along_s(rule, g, s, p, gg),
                    ), jvp=DIAGONAL)
                return record(grad_op, (g, s), out, g._dev, (g, s) + params)
        return rule(g, s, *params)

    return vjp


def _rule_along_s(rule, g, s, params, direction):
    """d rule(g, s) / ds times ``direction``, elementwise (the rule is diagonal in s): the
    derivative of the fused derivative node, by forward mode over the composed rule."""
    from ..autograd.linearize import jvp
    from .shape import broadcast_to

    shape = direction.shape
    g = g if g.shape == shape else broadcast_to(g, shape)
    s = s if s.shape == shape else broadcast_to(s, shape)
    return jvp(lambda v: rule(g, v, *params), s, direction)[1]


def zero(g, *saved):
    """The zero gradient, of g's shape (piecewise-constant ops)."""
    return plain(g._dev._backend.zeros_like(g._a), g._dev)


def binary(name, method, rule_a, rule_b, reads=((True, True), (True, True)), doc="",
           example=()):
    """The public op (and Tensor method) ``name(a, b)``, with broadcasting: forward
    ``backend.<method>(a, b)``, rules ``(g, a, b)`` (``(g,)`` if neither reads an operand).
    ``reads[i]`` says which operands rule ``i`` reads: only those needed by the rules of
    inputs that require grad are saved (the others are None). ``doc`` is the math of its
    docstring, ``example`` the lines of its doctest (:func:`example_section`)."""
    op = Op(name, (rule_a, rule_b), jvp=DIAGONAL)
    saves = any(map(any, reads))

    def forward(a, b):
        a, b, xa, xb, dev = operands(a, b, name)
        backend = dev._backend
        if (xa is not a and xa.size >= LARGE) or (xb is not b and xb.size >= LARGE):
            backend = backend.large
        try:
            out = getattr(backend, method)(xa, xb)
        except ValueError as exc:
            raise shape_error(name, a, b, exc) from None
        saved = ()
        if saves:
            # A view made stale by a change of its base gets its current graph first.
            if xa is not a and a._base is not None and a._view_ver != a._ver[0]:
                _refresh_view(a)  # (it rebuilds only while something records)
            if xb is not b and b._base is not None and b._view_ver != b._ver[0]:
                _refresh_view(b)
            # An operand is a tensor exactly when its raw value is not itself (operands keeps
            # Python scalars raw); the tape check costs only while a tape is active.
            need_a = xa is not a and (a._rg or (active[0] > 0 and needs_grad(a, False)))
            need_b = xb is not b and (b._rg or (active[0] > 0 and needs_grad(b, False)))
            saved = (a if (need_a and reads[0][0]) or (need_b and reads[1][0]) else None,
                     b if (need_a and reads[0][1]) or (need_b and reads[1][1]) else None)
            if active[0] and mode.levels:  # the JVP rules read both (the node keeps its own)
                return record(op, (a, b), out, dev, saved, (a, b))
        return record(op, (a, b), out, dev, saved)

    forward.__name__ = forward.__qualname__ = name
    forward.__doc__ = f"{name}(a, b): {doc}.\n\n" + textwrap.fill(
        "Elementwise, with NumPy broadcasting; a and b are tensors on one device, array-likes "
        "or Python scalars. A Python scalar is weakly typed, as in NumPy 2: it takes the "
        "tensor's dtype where its kind is the same or lower (bool < int < float: 2.0 times a "
        "float16 tensor stays float16); otherwise the dtypes promote as NumPy's. The gradient "
        "of a broadcast operand is summed back to its shape.", 88) + example_section(example)
    forward.op, forward.math = op, doc
    return public(forward, method=True)


def _refresh_view(t):
    from .indexing import refresh_view

    refresh_view(t)


def shape_error(name, a, b, exc):
    """The error of a two-input op whose operands do not broadcast (or otherwise fail)."""
    shapes = [getattr(v, "shape", ()) for v in (a, b)]
    if "broadcast" not in str(exc):
        dtypes = [getattr(v, "dtype", type(v).__name__) for v in (a, b)]
        return ValueError(f"gpuad: {name} of {dtypes[0]} {shapes[0]} and {dtypes[1]} "
                          f"{shapes[1]} failed: {exc}")
    return ValueError(
        f"gpuad: {name} cannot broadcast shapes {shapes[0]} and {shapes[1]} ({exc}); make "
        "the shapes broadcast-compatible, e.g. with reshape or expand_dims"
    )
