"""Side-by-side benchmarks of gpuad against its peers: ``python -m benchmarks run``, then
``report`` and ``readme`` (see ``benchmarks/__main__.py``); ``python -m benchmarks.kernels``
is the CUDA kernel suite on its own."""
