"""The points where ``ad.compile``'s tracer (:mod:`gpuad.capture`) hooks into code below it.

While a compiled function traces, ``active`` is its tracer; otherwise None, and each hook costs
one global lookup. Three kinds of code call here:

- a call whose Python must run again on every replay, as one step (an optimizer's update of
  one parameter: its step count and learning rate live in Python): :func:`opaque`;
- a random draw, which a replay repeats (the next numbers of the same generator, as the eager
  run would draw them): :func:`draw`;
- a read of a tensor's values on the host (``item()``, ``bool(t)``, ``numpy()``, printing),
  which a replay cannot repeat: :func:`host_read`.
"""

#: the tracer of the compiled function being traced, or None
active = None
#: bumped when Python state that changes what a function computes changes (a module's
#: train/eval mode): compiled functions trace again
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


def draw(fn, *args):
    """``fn(*args)``, a new array of random numbers; a replay draws again into the same
    buffer."""
    if active is None:
        return fn(*args)
    return active.draw(fn, args)


def host_read(tensor, what):
    """The values of ``tensor`` are about to reach the host by ``what`` (``"item()"``, ...)."""
    if active is not None:
        active.host_read(tensor, what)
