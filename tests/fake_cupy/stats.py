"""What the stand-in counted: the events a test may assert on (device-to-host copies, device
switches, kernel lookups and launches)."""


class Stats:
    """Counters of the stand-in's events since the last :meth:`reset`.

    ``device_to_host``: explicit copies to the host (``cupy.asnumpy``, ``.get()``, ``.item()``,
    ``float()``/``int()``/``bool()``, ``.tolist()``); ``set_device``: calls of
    ``cupy.cuda.runtime.setDevice`` (made by ``with Device(i)`` too); ``get_function``: calls of
    ``RawModule.get_function``; ``launches``: kernel launches (ElementwiseKernel,
    ReductionKernel and RawModule kernels); ``reductions``: the ReductionKernel launches among
    them (launches recorded by a stream capture are not, nor those a graph replays);
    ``captured``: launches recorded into stream captures; ``graph_launches``: graphs run
    (``cupy.cuda.Graph.launch``)."""

    FIELDS = ("device_to_host", "set_device", "get_function", "launches", "reductions",
              "captured", "graph_launches")

    def __init__(self):
        self.reset()

    def reset(self):
        for name in self.FIELDS:
            setattr(self, name, 0)

    def __repr__(self):
        return "Stats(" + ", ".join(f"{n}={getattr(self, n)}" for n in self.FIELDS) + ")"


stats = Stats()
