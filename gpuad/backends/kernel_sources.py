"""Where the CUDA sources of ``kernels/`` are: ``gpuad/kernels`` inside an installed wheel,
``kernels/`` next to the package in a source checkout (an editable install)."""
import functools
import pathlib

_PACKAGE = pathlib.Path(__file__).resolve().parents[1]


@functools.cache
def kernels_dir():
    """The folder holding ``elementwise.cuh`` and the other sources."""
    for folder in (_PACKAGE / "kernels", _PACKAGE.parent / "kernels"):
        if (folder / "elementwise.cuh").is_file():
            return folder
    raise FileNotFoundError(
        f"gpuad: the CUDA kernel sources are missing (looked in {_PACKAGE / 'kernels'} and "
        f"{_PACKAGE.parent / 'kernels'}); this installation is incomplete: reinstall gpuad"
    )


def read(name):
    """The text of one source file, e.g. ``read("rowwise.cu")``."""
    return (kernels_dir() / name).read_text()


def inlined(name):
    """The source with its local ``#include "..."`` lines replaced by the files' text (each
    once), so the whole program is in one string: CuPy's kernel cache is keyed on the code
    string, and would not see a change in an included file."""
    done = set()

    def expand(file):
        out = []
        for line in read(file).splitlines():
            stripped = line.strip()
            if stripped.startswith('#include "') and stripped.endswith('"'):
                inner = stripped[len('#include "'):-1]
                if inner not in done:
                    done.add(inner)
                    out.append(expand(inner))
                continue
            out.append(line)
        return "\n".join(out)

    return expand(name) + "\n"
