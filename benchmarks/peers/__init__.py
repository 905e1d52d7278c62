"""One module per framework, each building every suite's step the way that framework's users
write it. A peer module offers ``load(device, threads, **options) -> version`` (ImportError when
the framework is not installed) and, for each kind of problem it can run, a builder taking the
case's parameters and ``device`` and returning a step: ``chain`` (with ``operands="tensor"``
for op_overhead's tensor-operand case), ``mlp``, ``elementwise``,
``second_order``, ``jacobian``, ``chain_anomaly`` for the anomaly variant and
``chain_compiled``/``mlp_compiled`` for the compiled one (a missing one, or
``NotOffered``, means the framework has no such feature). Optional: ``sync(out)`` (wait for
the device), ``array_to_numpy(a)`` (default ``numpy.asarray``) and ``SUITES`` (the only suites
it takes part in). A step returns what
``benchmarks.suites.check`` compares with the float64 reference."""
import numpy as np

#: the builder each suite's cases call, with the case's parameters as keywords
BUILDERS = {"op_overhead": "chain", "scaling_chain": "chain", "mlp_step": "mlp",
            "scaling_mlp_batch": "mlp", "scaling_mlp_width": "mlp",
            "big_elementwise": "elementwise", "second_order": "second_order",
            "jacobian": "jacobian", "compiled_chain": "chain", "compiled_mlp_step": "mlp"}


class NotOffered(Exception):
    """The framework has no way to run this case (say, forward mode in HIPS autograd)."""


class Unavailable(Exception):
    """The framework is installed but cannot use the device asked for."""


def build(peer, suite, params, device, variant=None):
    """``peer``'s step for a case of ``suite`` (in mode ``variant``, if given)."""
    name = BUILDERS[suite] if variant is None else f"{BUILDERS[suite]}_{variant}"
    make = getattr(peer, name, None)
    if make is None or suite not in getattr(peer, "SUITES", (suite,)):
        raise NotOffered(f"{suite} ({name}): not offered by "
                         f"{peer.__name__.rsplit('.', 1)[-1]}")
    return make(device=device, **params)


def sync(peer, out):
    """Wait until ``out`` is computed (asynchronous devices and dispatchers)."""
    wait = getattr(peer, "sync", None)
    if wait is not None:
        wait(out)


def to_numpy(peer, out):
    """A step's result (an array or a list of them) as NumPy arrays."""
    if isinstance(out, (list, tuple)):
        return [to_numpy(peer, o) for o in out]
    return getattr(peer, "array_to_numpy", np.asarray)(out)
