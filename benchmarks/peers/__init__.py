"""One module per framework, each building every suite's step the way that framework's users
write it. A peer module offers ``load(device, threads, **options) -> version`` (ImportError when
the framework is not installed), ``build(suite, params, device) -> step`` (``NotOffered`` when
the framework has no such feature), ``sync()`` and ``to_numpy(outputs)``. A step returns what
``benchmarks.suites.check`` compares with the float64 reference."""


class NotOffered(Exception):
    """The framework has no way to run this case (say, forward mode in HIPS autograd)."""


class Unavailable(Exception):
    """The framework is installed but cannot use the device asked for."""
