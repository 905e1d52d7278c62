"""Graph nodes and op definitions: the data the backward engine walks.

An :class:`Op` holds one differentiable operation's rules: a VJP per input, and a slot for its
JVP rule (forward mode). A :class:`Node` is one application of an op: it points at its inputs'
nodes (or at leaf tensors) and holds only what the op's rules need.

There is one graph. A node made while a :class:`~gpuad.autograd.tape.GradientTape` records
also carries the marks of the tapes it is on, and its edges to inputs that only a tape watches.
"""


class Op:
    """A differentiable operation's rules.

    ``vjps[i](g, *saved)`` is the gradient for input ``i`` given the output gradient ``g``; the
    engine calls it only when input ``i`` needs a gradient, then undoes broadcasting and casts
    to the input's dtype in one shared place. When ``save_out`` is set, the op's output is
    passed as the first saved value (the output is kept as an array, so the graph holds no
    reference cycle). ``jvp`` is the forward-mode rule.

    An op whose rules are one function (a custom gradient) has ``vjps=None`` and
    ``vjp_all(node, g, saved)``, which returns every input's gradient in one call.
    """

    __slots__ = ("name", "vjps", "jvp", "save_out", "vjp_all")

    def __init__(self, name, vjps, jvp=None, save_out=False, vjp_all=None):
        self.name, self.vjps, self.jvp = name, vjps, jvp
        self.save_out, self.vjp_all = save_out, vjp_all

    def __repr__(self):
        return f"Op({self.name})"


FREED = object()  # marks a node whose saved values were released by a backward pass


class Node:
    """One recorded op application (a ``grad_fn``).

    ``parents[i]`` is the producer of input ``i``: a Node, a leaf Tensor that requires grad, or
    None when that input needs no gradient. ``vers`` pairs each saved tensor's version counter
    with its value at save time, to detect in-place changes. ``shape``/``dtype``/``device``
    describe the output, so gradients can be checked without keeping the output alive.

    ``tapes`` holds the marks of the gradient tapes that recorded this node (None: none).
    ``taped`` holds the edges a tape follows when they differ from ``parents``: they also reach
    inputs that a tape watches but that do not require grad (None: the same as ``parents``).
    A node only tapes recorded (no input requires grad) has parents that are all None, so
    ``backward()`` never reaches it.

    ``where`` is set only on nodes made while the anomaly mode is on: ``(file, line, function)``
    of the user's code that ran the forward op (see :mod:`.anomaly`); unset otherwise (read it
    with ``getattr(node, "where", None)``: the plain path spends nothing on it).
    """

    __slots__ = (
        "op", "parents", "saved", "vers", "out", "shape", "dtype", "device",
        "hooks", "retained", "tapes", "taped", "where", "__weakref__",
    )

    def __init__(self, op, parents, saved, vers, out, shape, dtype, device):
        self.op = op
        self.parents = parents
        self.saved = saved
        self.vers = vers
        self.out = out
        self.shape = shape
        self.dtype = dtype
        self.device = device
        self.hooks = self.retained = self.tapes = self.taped = None

    def in_graph(self):
        """Whether this node is part of the ``requires_grad`` graph (not only on tapes)."""
        return self.taped is None or self.parents.count(None) != len(self.parents)

    def name(self):
        return f"{self.op.name.title().replace('_', '')}Backward"

    @property
    def next_functions(self):
        return tuple(self.parents)

    def __repr__(self):
        return f"<{self.name()}>"


class OutputGrads:
    """The gradients that reached some outputs of a multi-output custom node, by index."""

    __slots__ = ("by_index",)

    def __init__(self, by_index):
        self.by_index = by_index

    def __add__(self, other):
        merged = dict(self.by_index)
        for i, g in other.by_index.items():
            merged[i] = g if i not in merged else merged[i] + g
        return OutputGrads(merged)
