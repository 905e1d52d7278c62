"""The points where ``ad.compile``'s tracer (:mod:`gpuad.capture`) hooks into code below it.

While a compiled function traces, ``active`` is its tracer; otherwise None, and each hook costs
one global lookup. Five kinds of code call here:

- a call whose Python must run again on every replay, as one step (an optimizer's update of
  one parameter: its step count and learning rate live in Python): :func:`opaque`;
- a call that changes only what the host keeps (a scheduler's learning rate, a fused
  optimizer's step count and its upload of changed settings): :func:`host`, which a CUDA
  graph's replay runs before it launches;
- a random draw, which a replay repeats (the next numbers of the same generator, as the eager
  run would draw them): :func:`draw`;
- a read of a tensor's values on the host (``item()``, ``bool(t)``, ``numpy()``, printing),
  which a replay cannot repeat: :func:`host_read`;
- a read of Python state that decides what is computed (a module's train/eval mode): a replay
  checks it first, and traces again where it differs: :func:`state`.
"""
from . import cpu_pool

#: the tracer of the compiled function being traced, or None
active = None
#: bumped when the structure of Python objects a function may have traced changes (a
#: module's parameter replaced, a parameter group added): compiled functions trace again
epoch = 0


def changed():
    """Python state that compiled functions may have traced has changed."""
    global epoch
    epoch += 1


def opaque(fn, *args):
    """``fn(*args)``, recorded as one step that a replay calls again with the same arguments
    (arrays among them by reference: the replay's values)."""
    if active is None:
        return fn(*args)
    return active.opaque(fn, args)


def host(fn, *args):
    """``fn(*args)``, which changes host state only (no work on device arrays but the upload of
    new settings): a replay calls it again; a CUDA graph's replay calls it before launching,
    so what it uploads reaches the kernels of the same step."""
    if active is None:
        return fn(*args)
    return active.host(fn, args)


def draw(fn, *args):
    """``fn(*args)``, a new array of random numbers; a replay draws again into the same
    buffer."""
    if active is None:
        return fn(*args)
    return active.draw(fn, args)


def host_read(tensor, what, guard=True):
    """The values of ``tensor`` are about to reach the host by ``what`` (``"item()"``, ...);
    ``guard=False``: its raw array is handed out (``.array``), which only user code is
    refused."""
    if active is not None:
        active.host_read(tensor, what, guard)


def storage(a):
    """``(the class, the base)`` that array ``a`` has in an eager run. While a compiled
    function traces, the arrays it computes are Traced views wrapping plain ones; a gradient
    that eager code would adopt as ``.grad`` without a copy must be adopted in the trace too
    (else each replay copies it)."""
    if active is None:
        return a.__class__, cpu_pool.base(a)
    return active.storage(a)


def state(obj, name):
    """``obj.name``, a Python value that decides what is computed (``module.training``): a
    replay of a compiled function that read it runs only while it is the same."""
    value = getattr(obj, name)
    if active is not None:
        active.state(obj, name, value)
    return value
