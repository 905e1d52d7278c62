"""Graph nodes and op definitions: the data the backward engine walks.

An :class:`Op` holds one differentiable operation's rules: a VJP per input, and a slot for its
JVP rule (forward mode). A :class:`Node` is one application of an op: it points at its inputs'
nodes (or at leaf tensors) and holds only what the op's rules need.
"""


class Op:
    """A differentiable operation's rules.

    ``vjps[i](g, *saved)`` is the gradient for input ``i`` given the output gradient ``g``; the
    engine calls it only when input ``i`` needs a gradient, then undoes broadcasting and casts
    to the input's dtype in one shared place. When ``save_out`` is set, the op's output is
    passed as the first saved value (the output is kept as an array, so the graph holds no
    reference cycle). ``jvp`` is the forward-mode rule.
    """

    __slots__ = ("name", "vjps", "jvp", "save_out")

    def __init__(self, name, vjps, jvp=None, save_out=False):
        self.name = name
        self.vjps = vjps
        self.jvp = jvp
        self.save_out = save_out

    def __repr__(self):
        return f"Op({self.name})"


FREED = object()  # marks a node whose saved values were released by a backward pass


class Node:
    """One recorded op application (a ``grad_fn``).

    ``parents[i]`` is the producer of input ``i``: a Node, a leaf Tensor that requires grad, or
    None when that input needs no gradient. ``vers`` pairs each saved tensor's version counter
    with its value at save time, to detect in-place changes. ``shape``/``dtype``/``device``
    describe the output, so gradients can be checked without keeping the output alive.
    """

    __slots__ = (
        "op", "parents", "saved", "vers", "out", "shape", "dtype", "device",
        "hooks", "retained", "__weakref__",
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
        self.hooks = None
        self.retained = None

    def name(self):
        return f"{self.op.name.title().replace('_', '')}Backward"

    @property
    def next_functions(self):
        return tuple(self.parents)

    def __repr__(self):
        return f"<{self.name()}>"
