"""What ``ad.cuda.graph`` says when a capture is refused: CuPy's and CUDA's refusals inside the
block, in gpuad's terms (the operation, the user's line, what to do instead)."""
from __future__ import annotations

from collections.abc import Iterable
from types import FrameType, TracebackType

from ._frames import inside_gpuad


def no_memory(size: int, frame: FrameType | None) -> str:
    frames = []
    while frame is not None:
        frames.append((frame, frame.f_lineno))
        frame = frame.f_back
    return (f"gpuad: inside ad.cuda.graph{_where(reversed(frames))}: the capture needs "
            f"{size:,} bytes of new GPU memory, and a "
            "capture allocates only memory its pool already holds: warm up first, running the "
            "same code with `with ad.cuda.graph(g, warmup=True):` (the same graph, pool and "
            "stream), and drop the warm-up's outputs (or warm up twice) before capturing")


#: (exception type name, a phrase of CuPy's or CUDA's message, what it was, what to do)
_REFUSALS = (
    ("NotImplementedError", "gpuad's own handle",
     "a matrix product (matmul, @, dot, tensordot, nn.Linear) inside a capture runs on gpuad's "
     "own cuBLAS handle (CuPy's refuses to capture), which needs NVIDIA's bindings",
     "install the capture extra (nvmath-python), or keep matrix products outside the block"),
    ("NotImplementedError", "cuBLAS",
     "CuPy's cuBLAS (einsum of floats, or a matrix product of float16 or complex data) is "
     "refused while a stream captures; gpuad captures float32 and float64 matmul only",
     "use matmul in float32 or float64 (or keep it outside the captured block)"),
    ("NotImplementedError", "cuRAND",
     "legacy cupy.random (cuRAND's host API) is refused while a stream captures",
     "draw with ad.rand/ad.randn (or a cupy.random.Generator), whose state lives on the GPU, "
     "so each replay draws new numbers"),
    ("NotImplementedError", "cuSOLVER", "cuSOLVER (linear solvers) is refused while a "
     "stream captures", "solve outside the captured block"),
    ("RuntimeError", "D2H transfers",
     "a read of a CUDA tensor's values on the host (item(), float(t), bool(t), `if t > 0:`, "
     "tolist(), numpy(), print, or an op whose result size depends on the values, such as "
     "boolean-mask indexing) cannot be captured: a replay runs no Python",
     "compute on the device inside the block, and read the static outputs after g.replay()"),
    ("RuntimeError", "H2D transfers",
     "a copy of host data to the GPU (ad.tensor(...) of Python or NumPy data, a NumPy array "
     "or a list as an operand or an index) cannot be captured",
     "make such tensors before capturing (static inputs) and copy new values into them with "
     "x.copy_(...) before each g.replay()"),
    ("RuntimeError", "synchronous API calls",
     "a synchronous copy or memset cannot be captured", "use the asynchronous operations"),
    ("CUDARuntimeError", "cudaErrorStreamCaptureUnsupported",
     "an operation CUDA does not allow while a stream captures (a synchronize such as "
     "ad.cuda.synchronize(), or freeing GPU memory)", "do it before or after the block"),
    ("CUDARuntimeError", "cudaErrorStreamCaptureImplicit",
     "work on the legacy default stream while a blocking stream captures",
     "capture on a non-blocking stream (ad.cuda.graph's default)"),
    ("", "invalidated the capture", "an earlier operation in the block invalidated the "
     "capture", "remove the synchronize or stream query from the block"),
    ("CUDARuntimeError", "cudaErrorStreamCaptureInvalidated", "an earlier operation in the "
     "block invalidated the capture", "remove the synchronize or stream query from the block"),
)


def explain(exc: BaseException, tb: TracebackType | None) -> str | None:
    """gpuad's message for a refusal of CuPy or CUDA inside the block (None: another
    error, left as it is)."""
    frames = []
    while tb is not None:
        frames.append((tb.tb_frame, tb.tb_lineno))
        tb = tb.tb_next
    text = str(exc)
    names = {k.__name__ for k in type(exc).__mro__}
    for kind, phrase, what, fix in _REFUSALS:
        if (not kind or kind in names) and phrase in text:
            return (f"gpuad: inside ad.cuda.graph{_where(frames)}: {what}. Fix: {fix}. "
                    f"({type(exc).__name__}: {text})")
    return None


_LIBRARIES = ("cupy", "cupyx", "cupy_backends", "fake_cupy", "numpy")


def _where(frames: Iterable[tuple[FrameType, int]]) -> str:
    """`` at FILE:LINE (in gpuad's NAME)``: of ``(frame, line)`` from the outermost, the last
    line of the user's code before the call into gpuad (or CuPy) that failed, and that gpuad
    function."""
    user, entered = None, None
    for frame, line in frames:
        module = str(frame.f_globals.get("__name__", "")).split(".")[0]
        if inside_gpuad(frame):
            entered = entered or frame.f_code.co_name
        elif module in _LIBRARIES:
            break
        elif entered is None:
            user = (frame.f_code.co_filename, line)
    text = f" at {user[0]}:{user[1]}" if user else ""
    return text + (f" (in gpuad's {entered})" if entered else "")

