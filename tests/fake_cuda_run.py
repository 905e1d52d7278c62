"""Run a module like ``python -m`` with the CuPy stand-in (tests/fake_cupy) installed:

    python tests/fake_cuda_run.py [--devices 2] -m <module> [args...]

so gpuad's CUDA path (``gpuad info``, the demo, benchmarks) runs here without a GPU. The
current directory comes first on ``sys.path``, as with ``python -m``.
"""
import os
import runpy
import sys

USAGE = "usage: python tests/fake_cuda_run.py [--devices 1|2] -m <module> [args...]"


def main(argv):
    devices = 1
    if argv[:1] == ["--devices"] and len(argv) > 1 and argv[1] in ("1", "2"):
        devices, argv = int(argv[1]), argv[2:]
    if len(argv) < 2 or argv[0] != "-m":
        print(USAGE, file=sys.stderr)
        return 2
    sys.path[0:1] = [os.getcwd(), os.path.dirname(os.path.abspath(__file__))]
    from fake_cupy import install

    install(devices)
    sys.argv = argv[1:]
    runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
