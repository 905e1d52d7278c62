"""Writes tests/cupy_names.json: the public names of the parts of real CuPy that the stand-in
(tests/fake_cupy) imitates, with CuPy's version. The stand-in offers only these names.

    python tests/cupy_names.py           # rewrite the file from the installed cupy
    python tests/cupy_names.py --print   # print what it would write
"""
import json
import pathlib
import sys

PATH = pathlib.Path(__file__).with_name("cupy_names.json")

#: the namespaces the stand-in imitates, each a dotted path from an importable module
NAMESPACES = ("cupy", "cupy.ndarray", "cupy.ufunc", "cupy.ElementwiseKernel",
              "cupy.ReductionKernel", "cupy.RawModule", "cupy.RawKernel", "cupy.cuda",
              "cupy.cuda.Device", "cupy.cuda.Event", "cupy.cuda.Stream", "cupy.cuda.Graph",
              "cupy.cuda.MemoryPool", "cupy.cuda.runtime",
              "cupy.cuda.memory", "cupy.cuda.memory.MemoryPool", "cupy.cuda.memory.MemoryPointer",
              "cupy.cuda.pinned_memory", "cupy.cuda.pinned_memory.PinnedMemoryPool",
              "cupy.cuda.compiler", "cupy.cuda.driver", "cupy.random",
              "cupy.random.Generator", "cupy.random.RandomState", "cupyx", "cupyx.scipy",
              "cupyx.scipy.special")


def resolve(path, root_modules):
    """The object at dotted ``path``, starting from ``root_modules[first part]``."""
    first, *rest = path.split(".")
    obj = root_modules[first]
    for part in rest:
        obj = getattr(obj, part)
    return obj


def public(obj):
    return sorted(n for n in dir(obj) if not n.startswith("_"))


#: namespaces whose instances carry names their class lacks (attributes set per instance), with
#: the instance that shows them
INSTANCES = {"cupy.cuda.Stream": "cupy.cuda.Stream.null"}


def collect():
    import cupy
    import cupyx
    import cupyx.scipy.special  # noqa: F401  (a submodule cupyx does not import itself)

    roots = {"cupy": cupy, "cupyx": cupyx}
    return {"cupy_version": cupy.__version__,
            "names": {p: sorted(set(public(resolve(p, roots))) | set(
                public(resolve(INSTANCES[p], roots)) if p in INSTANCES else ()))
                for p in NAMESPACES}}


def dumps(data):
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


if __name__ == "__main__":
    text = dumps(collect())
    if sys.argv[1:] == ["--print"]:
        sys.stdout.write(text)
    else:
        PATH.write_text(text)
