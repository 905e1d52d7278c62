"""Which errors of CuPy and the CUDA libraries mean that the GPU ran out of memory.

CuPy's pool raises ``cupy.cuda.memory.OutOfMemoryError``, but the libraries that allocate
workspaces of their own report it in their own way: cuBLAS as ``CUBLASError`` with
``CUBLAS_STATUS_ALLOC_FAILED``, cuRAND as ``CURANDError`` with
``CURAND_STATUS_ALLOCATION_FAILED``, and the runtime and driver (a CUB temporary, a module
load) as ``cudaErrorMemoryAllocation`` / ``CUDA_ERROR_OUT_OF_MEMORY``. They are told apart
by class name and ``status``, so nothing here imports CuPy or loads a library
(``cupy_backends.cuda.libs.cublas`` loads libcublas, which may not even be installed).
"""

#: error class name -> the status that means out of memory (CUDA's numbering)
OUT_OF_MEMORY_STATUS = {
    "CUBLASError": 3,  # CUBLAS_STATUS_ALLOC_FAILED
    "CURANDError": 102,  # CURAND_STATUS_ALLOCATION_FAILED
    "CUDARuntimeError": 2,  # cudaErrorMemoryAllocation
    "CUDADriverError": 2,  # CUDA_ERROR_OUT_OF_MEMORY
}


def is_out_of_memory(exc, pool_error):
    """Whether ``exc`` is a failed GPU allocation: ``pool_error`` (CuPy's pool's
    ``cupy.cuda.memory.OutOfMemoryError``), or a CUDA library's, runtime's or driver's error
    whose status says out of memory."""
    if isinstance(exc, pool_error):
        return True
    for cls in type(exc).__mro__:
        status = OUT_OF_MEMORY_STATUS.get(cls.__name__)
        if status is not None:
            return getattr(exc, "status", None) == status
    return False
