"""The Python steps of ``benchmarks/gpu_checks.sh``: ``python -m benchmarks.gpu_steps STEP OUT``.

Each step writes ``OUT/<step>.json``, rewritten after each item (so a step stopped by its
timeout leaves what it had done), and prints a line per item; its exit status is 1 when any
item failed (a failed item never stops the others).

- ``reason``: gpuad's own reason why cuda:0 is unusable (``gpuad.backends.probe``), empty
  when it is usable (no JSON);
- ``env``: nvidia-smi and the versions of Python, NumPy, CuPy, NVRTC, the CUDA runtime and
  driver, and PyTorch;
- ``kernels``: every kernel the CUDA backend builds (derived from
  ``gpuad/backends/kernel_table.py``, as ``gpuad.cuda.warmup`` builds them), compiled and
  launched one at a time: seconds of its first call (compile, or load from CuPy's cache) and
  of a second launch; then the list is checked against what ``warmup`` counts;
- ``fused``: each fused elementwise kernel against the CPU backend on random and edge values,
  per element, with per-dtype tolerances (``TOLERANCE``) and the CPU formula's own rounding
  noise at that element (``noise``);
- ``ops``: every op case of ``tests/op_cases.py``, value and gradient, CUDA against CPU, per
  element relative to its magnitude and its term scale (``op_error``, ``term_scale``).
"""
import importlib.util
import json
import pathlib
import platform
import subprocess
import sys
import time
import traceback
import warnings

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]


def reason(out):
    print(_reason() or "")
    return 0


def env(out):
    """Versions and the GPU, each read on its own: one that fails is recorded as its error."""
    fields = {}

    def field(name, read):
        try:
            fields[name] = read()
        except Exception as exc:  # noqa: BLE001  (a missing piece is what this step reports)
            fields[name] = f"error: {type(exc).__name__}: {exc}"
        print(f"{name:16s} {fields[name]}")

    def smi():
        run = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=30)
        return (run.stdout + run.stderr).strip()

    def cupy_attr(path):
        import cupy

        value = cupy
        for part in path.split("."):
            value = getattr(value, part)
        return value() if callable(value) else value

    def torch_cuda():
        import torch

        return {"version": torch.__version__, "cuda": torch.version.cuda,
                "cuda_available": torch.cuda.is_available()}

    field("gpuad_reason", lambda: _reason() or "none: cuda:0 is usable")
    field("cupy_cache_dir", lambda: _cache())
    field("python", lambda: f"{platform.python_version()} ({sys.executable})")
    field("numpy", lambda: np.__version__)
    field("cupy", lambda: cupy_attr("__version__"))
    field("nvrtc", lambda: cupy_attr("cuda.nvrtc.getVersion"))
    field("cuda_runtime", lambda: cupy_attr("cuda.runtime.runtimeGetVersion"))
    field("cuda_driver", lambda: cupy_attr("cuda.runtime.driverGetVersion"))
    field("devices", lambda: cupy_attr("cuda.runtime.getDeviceCount"))
    field("device_0", lambda: _device_name())
    field("torch", torch_cuda)
    field("test_packages", lambda: {name: importlib.util.find_spec(name) is not None
                                     for name in ("hypothesis", "pytest_timeout", "scipy")})
    field("nvidia-smi", smi)
    (out / "env.json").write_text(json.dumps(fields, indent=1, default=str) + "\n")
    return 0


def _reason():
    from gpuad.backends.probe import cuda_unavailable_reason

    return cuda_unavailable_reason(0)


def _cache():
    """CuPy's kernel cache folder and how many files it holds (a carried cache is not empty)."""
    import os

    path = pathlib.Path(os.environ.get("CUPY_CACHE_DIR")
                        or pathlib.Path.home() / ".cupy" / "kernel_cache")
    files = sum(1 for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0
    return f"{path} ({files} files)"


def _device_name():
    import cupy

    name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
    return name.decode() if isinstance(name, bytes) else name


def _sync():
    import cupy

    cupy.cuda.Device().synchronize()


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    _sync()
    return time.perf_counter() - t0


# ---- kernels -------------------------------------------------------------------------------

def _row_launchers(backend, xp, dtype):
    """Per row or optimizer kernel of kernel_table (``_warp``/``_block`` picked by the row
    length, as the backend does): a call of the backend that launches it. (A kernel file is
    one module, compiled whole at the first launch of one of its kernels.)"""
    def rows(cols):
        return xp.asarray(np.random.default_rng(0).standard_normal((8, cols)), dtype=dtype)

    def softmax_grad(cols):
        x = rows(cols)
        return lambda: backend.fused_softmax_grad(0, x, x, x, (1,))

    def cross_entropy(cols):
        x, labels = rows(cols), xp.zeros(8, dtype=np.int64)
        return lambda: backend.fused_cross_entropy(x, labels, -100, 0.0)

    def softmax(cols):
        x = rows(cols)
        return lambda: backend.softmax(x, 1)

    flat = [xp.zeros(1000, dtype=dtype) for _ in range(4)]
    hyper = xp.zeros(8, dtype=np.float64)  # lr 0: a launch that leaves the values as they are
    return {
        "softmax_warp": softmax(100),
        "softmax_block": softmax(2000),
        "softmax_backward_warp": softmax_grad(100),
        "softmax_backward_block": softmax_grad(2000),
        "cross_entropy_warp": cross_entropy(100),
        "cross_entropy_block": cross_entropy(2000),
        "sgd_update": lambda: backend.fused_optimizer_step("sgd", flat[:3], hyper),
        "adam_update": lambda: backend.fused_optimizer_step("adam", flat, hyper),
    }


def kernels(out):
    import cupy

    import gpuad as ad
    from gpuad.backends.kernel_table import MODULES, TYPES, backend_elementwise

    backend = ad.device("cuda:0").backend
    counter = backend.kernels
    results, failed = [], 0
    doc = {"device": _device_name(), "warmup_count": None, "kernels": results}

    def one(name, dtype, first, again):
        nonlocal failed
        entry = {"kernel": name, "dtype": np.dtype(dtype).name}
        try:
            before = counter.launches
            entry["first_s"] = _timed(first)
            entry["again_s"] = _timed(again)
            if counter.launches - before < 2:
                raise AssertionError("the call launched no kernel of gpuad's (the backend "
                                     "took its generic path)")
            entry["status"] = "ok"
        except Exception as exc:  # noqa: BLE001  (reported, and the next kernel is tried)
            failed += 1
            entry |= {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[-2000:]}
        results.append(entry)
        _save(out / "kernels.json", doc)
        print(f"{entry['status']:6s} {name:28s} {entry['dtype']:8s} "
              + (f"first {entry['first_s']:.3f} s, again {entry['again_s'] * 1e3:.3f} ms"
                 if entry["status"] == "ok" else entry["error"].splitlines()[-1][:300]),
              flush=True)

    with cupy.cuda.Device(0):
        for function, dtype, n_inputs, n_params in backend_elementwise():
            arrays = [cupy.asarray(np.linspace(0.1, 1, 1024), dtype=dtype)] * n_inputs
            args = (*arrays, *(1.0,) * n_params)

            def call(function=function, dtype=dtype, n=n_inputs, p=n_params, args=args):
                counter.elementwise(function, dtype, n, p)(*args)

            one(f"gpuad_{function}", dtype, call, call)
        for dtype in TYPES:
            launchers = _row_launchers(backend, cupy, dtype)
            for kernel in (k for names in MODULES.values() for k in names):
                launch = launchers.get(kernel)
                if launch is None:
                    launch = _missing(kernel)
                one(kernel, dtype, launch, launch)
        for dtype in (*TYPES, np.complex64):
            a = cupy.ones(1024, dtype=dtype)
            one("gpuad_all_finite", dtype, lambda a=a: counter.all_finite(a),
                lambda a=a: counter.all_finite(a))
        built = len([r for r in results if r["kernel"] != "gpuad_all_finite"])
        try:
            counted = ad.cuda.warmup()
        except Exception as exc:  # noqa: BLE001
            counted = f"error: {type(exc).__name__}: {exc}"
        if counted != built:
            failed += 1
            print(f"failed: gpuad.cuda.warmup builds {counted} kernels, this step {built}: the "
                  "list derived here no longer matches the backend's")
    ok = sum(r["status"] == "ok" for r in results)
    print(f"{ok} of {len(results)} kernels compiled and launched; warmup counts {counted}")
    _save(out / "kernels.json", doc | {"warmup_count": counted})
    return 1 if failed else 0


def _missing(kernel):
    def launch():
        raise LookupError(f"benchmarks/gpu_steps.py has no launcher for the kernel {kernel} "
                          "of kernel_table.MODULES: add one to _row_launchers")
    return launch


# ---- fused kernels against the CPU -----------------------------------------------------------

#: data dtype -> (rtol, atol) of a fused kernel's result against the CPU's, per element.
#: float64: CUDA's double functions are within 2 ulp and NVRTC contracts a*b+c into fma
#: (different rounding of the rules' sums), which cancellation in a derivative rule can amplify;
#: a wrong formula is off by far more than 1e-11. float32 the same, with CUDA's single-precision
#: functions within 4 ulp (tanf; most 1-2). The absolute part is the dtype's smallest normal: a
#: result CUDA's -ftz=true flushed is matched by the flushed alternatives of ``_flush``, so
#: nothing larger is needed, and a tiny right value (sigmoid(-30) = 9.4e-14) is not passed when
#: it comes back 0 or 3 times too large. float16 is computed in float32 and rounded once:
#: against the float32 kernel's result rounded, one float16 ulp (2^-10) either way, and two
#: subnormal steps (2^-23, below float16's smallest normal 2^-14).
TOLERANCE = {np.dtype(np.float64): (1e-11, float(np.finfo(np.float64).tiny)),
             np.dtype(np.float32): (1e-5, float(np.finfo(np.float32).tiny)),
             np.dtype(np.float16): (2e-3, 2 ** -23)}
#: the parameters each op is run with
PARAMS = {"leaky_relu": (0.1,), "elu": (1.3,), "softplus": (1.5, 20.0)}


def edge_values(dtype, n=2000):
    """Random values and the edges: 0, -0, +-1, +-inf, nan, the largest finite, +-1e4, the
    smallest normal and the smallest subnormal (both signs)."""
    f = np.finfo(dtype)
    edges = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, np.inf, -np.inf, np.nan, f.max, -f.max, 1e4,
             -1e4, f.tiny, -f.tiny, f.smallest_subnormal, -f.smallest_subnormal]
    rng = np.random.default_rng(0)
    with np.errstate(over="ignore"):
        return np.concatenate([np.array(edges), rng.uniform(-3, 3, n),
                               rng.standard_normal(n) * 30]).astype(dtype)


def _quiet(fn, *args):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return fn(*args)


def _forward_ref(row, x):
    backend = __import__("gpuad").device("cpu").backend
    return _quiet(row.backend_forward, backend, x, *PARAMS.get(row.name, ()))


def _rule_ref(row, x, g):
    """The op's own derivative rule on the CPU, in x's dtype: d op(x) / dx applied to g."""
    import gpuad as ad

    params = PARAMS.get(row.name, ())
    t = ad.tensor(x, requires_grad=True)
    (grad,) = _quiet(lambda: ad.grad(row.op(t, *params), [t], ad.tensor(g), allow_unused=True))
    return np.zeros_like(x) if grad is None else grad.numpy()


def _flush(a):
    """``a`` as CUDA's -ftz=true sees float32: subnormals are zeros of the same sign."""
    if a.dtype != np.float32:
        return a
    return np.where(np.abs(a) < np.finfo(a.dtype).tiny, np.copysign(0, a), a).astype(a.dtype)


#: ``noise`` looks at the inputs moved by up to this many ulps either way; an element may be
#: off by this many times the noise it finds (NumPy's and CUDA's functions are each within 1 to
#: 4 ulps, and the noise found is NumPy's error, up to about one rounding of the terms)
NOISE_ULPS, NOISE_TIMES = 32, 8


def noise(ref, inputs, dtype):
    """Per element: the largest rounding error of the CPU's own evaluation of the formula in
    ``dtype`` (``ref(*inputs)``) against the same formula in a wider type (float64 for float32,
    ``np.longdouble`` for float64), at the inputs and at their neighbours up to ``NOISE_ULPS``
    ulps away (each element its own direction), since the error at one point may happen to be 0.
    Where a formula cancels (``1 - y`` of a sigmoid near 1, ``x * (1 + tanh(u))`` of gelu below
    -2) this is the rounding of the element's own terms, which CUDA's functions and fma
    contraction round differently from NumPy; where it does not, a few ulps of the result.
    0 where nothing finite is found."""
    dtype = np.dtype(dtype)
    wide = np.float64 if dtype == np.float32 else np.longdouble
    eps = float(np.finfo(dtype).eps)
    signs = [np.random.default_rng(7 + i).choice([-1.0, 1.0], a.shape)
             for i, a in enumerate(inputs)]
    spread = np.zeros(np.shape(inputs[0]))
    for j in range(-NOISE_ULPS, NOISE_ULPS + 1):
        moved = [_quiet(lambda a=a, s=s, j=j: (a * (1 + s * j * eps)).astype(dtype))
                 for a, s in zip(inputs, signs)]
        narrow = ref(*moved).astype(wide)
        exact = ref(*[m.astype(wide) for m in moved])
        with np.errstate(invalid="ignore", over="ignore"):
            error = np.abs(narrow - exact).astype(np.float64)
        spread = np.fmax(spread, np.where(np.isfinite(error), error, 0.0))
    return spread


def _agree(got, wants, dtype, floor=0.0):
    """Per element: close to one of ``wants`` (nan where it is nan, the same inf), within the
    dtype's ``TOLERANCE`` plus ``floor`` (an element's own absolute allowance, e.g.
    ``NOISE_TIMES * noise(...)``; nan counts as 0)."""
    rtol, atol = TOLERANCE[np.dtype(dtype)]
    got = got.astype(np.float64)
    floor = np.nan_to_num(np.asarray(floor, dtype=np.float64), nan=0.0, posinf=0.0)
    ok = np.zeros(got.shape, dtype=bool)
    for want in wants:
        want = want.astype(np.float64)
        with np.errstate(invalid="ignore"):
            ok |= ((np.isnan(got) & np.isnan(want)) | (got == want)  # (an inf only itself)
                   | (np.isfinite(want)
                      & (np.abs(got - want) <= atol + rtol * np.abs(want) + floor)))
    return ok


def _check(name, dtype, got, wants, inputs, floor=0.0):
    ok = _agree(got, wants, dtype, floor)
    entry = {"kernel": name, "dtype": np.dtype(dtype).name, "values": int(ok.size),
             "status": "ok" if ok.all() else "failed"}
    if not ok.all():
        bad = np.flatnonzero(~ok)[:5]
        entry["first_bad"] = [{"inputs": [float(a[i]) for a in inputs], "got": float(got[i]),
                               "want": float(wants[0][i])} for i in bad]
        entry["bad"] = int((~ok).sum())
    print(f"{entry['status']:6s} {name:20s} {entry['dtype']:8s} "
          + (f"{entry['bad']} of {entry['values']} off, e.g. {entry['first_bad'][0]}"
             if "bad" in entry else f"{entry['values']} values"), flush=True)
    return entry


def fused(out):
    with np.errstate(all="ignore"):  # (real CuPy has no floating-point warnings)
        return _fused(out)


def _fused(out):
    import cupy

    import gpuad as ad
    from gpuad.backends.kernel_table import kernel_rows

    counter = ad.device("cuda:0").backend.kernels
    results = []
    doc = {"tolerance": {k.name: v for k, v in TOLERANCE.items()},
           "noise": {"ulps": NOISE_ULPS, "times": NOISE_TIMES}, "results": results}
    for row in kernel_rows():
        params = PARAMS.get(row.name, ())
        for dtype in (np.float32, np.float64):
            try:
                results += _fused_row(cupy, counter, row, params, dtype)
            except Exception:  # noqa: BLE001
                results.append({"kernel": row.kernel, "dtype": np.dtype(dtype).name,
                                "status": "failed", "error": traceback.format_exc(limit=-3)})
                print(f"failed {row.kernel} {np.dtype(dtype).name}: {results[-1]['error']}")
        try:
            results += _fused_half(cupy, counter, row, params)
        except Exception:  # noqa: BLE001
            results.append({"kernel": row.kernel, "dtype": "float16", "status": "failed",
                            "error": traceback.format_exc(limit=-3)})
            print(f"failed {row.kernel} float16: {results[-1]['error']}")
        _save(out / "fused.json", doc)
    failed = sum(r["status"] != "ok" for r in results)
    print(f"{len(results) - failed} of {len(results)} fused kernels agree with the CPU")
    return 1 if failed else 0


def _fused_row(cupy, counter, row, params, dtype):
    """The forward (where the row runs it in a kernel) against the CPU backend's method, the
    derivative against the op's rule on the CPU; float32 also against the CPU on flushed
    subnormals (inputs and results)."""
    x = edge_values(dtype)
    g = np.random.default_rng(1).standard_normal(x.size).astype(dtype)
    want = _forward_ref(row, x)
    entries = []
    if row.kernel_forward:
        fwd = counter.elementwise(f"{row.kernel}_fwd", dtype, 1, len(params))
        got = cupy.asnumpy(fwd(cupy.asarray(x), *params))
        wants = [want, _flush(want), _flush(_forward_ref(row, _flush(x)))]
        floor = NOISE_TIMES * noise(lambda x: _forward_ref(row, x), [x], dtype)
        entries.append(_check(f"{row.kernel}_fwd", dtype, got, wants, [x], floor))
    saved = x if row.reads == "x" else want
    bwd = counter.elementwise(f"{row.kernel}_bwd", dtype, 2, len(params))
    got = cupy.asnumpy(bwd(cupy.asarray(g), cupy.asarray(saved), *params))
    want = _rule_ref(row, x, g)
    wants = [want, _flush(want), _flush(_rule_ref(row, _flush(x), _flush(g)))]
    floor = NOISE_TIMES * noise(lambda x, g: _rule_ref(row, x, g), [x, g], dtype)
    entries.append(_check(f"{row.kernel}_bwd", dtype, got, wants, [g, saved], floor))
    return entries


def _fused_half(cupy, counter, row, params):
    """float16 kernels compute in float32: each result is the float32 kernel's on the same
    (float16) inputs, rounded; the forward also against the CPU in float32, rounded."""
    x = edge_values(np.float16)
    g = np.random.default_rng(1).standard_normal(x.size).astype(np.float16)
    y = _quiet(lambda: _forward_ref(row, x.astype(np.float32)).astype(np.float16))
    runs = {"fwd": [x]} if row.kernel_forward else {}
    runs["bwd"] = [g, x if row.reads == "x" else y]
    entries = []
    for kind, inputs in runs.items():
        half = counter.elementwise(f"{row.kernel}_{kind}", np.float16, len(inputs), len(params))
        single = counter.elementwise(f"{row.kernel}_{kind}", np.float32, len(inputs),
                                     len(params))
        got = cupy.asnumpy(half(*[cupy.asarray(a) for a in inputs], *params))
        ref = cupy.asnumpy(single(*[cupy.asarray(a.astype(np.float32)) for a in inputs],
                                  *params))
        wants = [_quiet(lambda ref=ref: ref.astype(np.float16))] + ([y] if kind == "fwd" else [])
        entries.append(_check(f"{row.kernel}_{kind}", np.float16, got, wants, inputs))
    return entries


# ---- op cases --------------------------------------------------------------------------------

#: float64 op results on CUDA against the CPU, per element: cuBLAS, CuPy's reductions and
#: CUDA's math functions round differently from NumPy's (other summation orders, fma), by a few
#: ulps of the element's own terms; relative to the element's magnitude plus its term scale
#: (``term_scale``), so that an element left small by cancellation may differ by as much as its
#: terms' rounding, and one that is small without cancellation may not
OP_RTOL = 1e-9
#: ``term_scale`` moves each input by this (relative, each element its own sign)
MOVE = 1e-6


def ops(out):
    sys.path.insert(0, str(ROOT / "tests"))
    from op_cases import CASES

    import gpuad as ad

    results = []
    for case in CASES:
        entry = {"case": case.name}
        try:
            errors = _op_case(ad, case)
            bad = {k: v for k, v in errors.items() if not v <= OP_RTOL}
            entry |= {"status": "failed" if bad else "ok", "relative_errors": errors}
        except Exception:  # noqa: BLE001
            entry |= {"status": "failed", "error": traceback.format_exc(limit=-3)}
        results.append(entry)
        shown = entry.get("error", "").strip().splitlines()[-1:] or [
            f"largest relative error {max(entry['relative_errors'].values(), default=0):.2e}"]
        print(f"{entry['status']:6s} {case.name:32s} {shown[0][:300]}", flush=True)
        _save(out / "ops.json", {"rtol": OP_RTOL, "done": False, "results": results})
    failed = sum(r["status"] != "ok" for r in results)
    print(f"{len(results) - failed} of {len(results)} op cases agree on CUDA and the CPU")
    _save(out / "ops.json", {"rtol": OP_RTOL, "done": True, "results": results})
    return 1 if failed else 0


def _evaluate(ad, case, xs, dev):
    """The case's value and gradients (against a fixed cotangent) on ``dev`` in float64."""
    ts = [ad.tensor(x, dtype=ad.float64, device=dev, requires_grad=case.grad) for x in xs]
    y = case.fn(*ts)
    outs = {"value": y}
    if case.grad:
        u = ad.tensor(np.linspace(-1, 1, y.size).reshape(y.shape), device=dev, dtype=ad.float64)
        for i, gr in enumerate(ad.grad(y, ts, u, allow_unused=True)):
            if gr is not None:
                outs[f"grad {i}"] = gr
    return {k: v.numpy() for k, v in outs.items()}


def term_scale(evaluate, xs):
    """Per output and element: how much the CPU's result moves when each input element moves by
    ``MOVE`` of itself (two random directions), divided by ``MOVE``: about the magnitude of the
    element's own terms (a sum of large terms that cancel moves as they do), or its magnitude
    times its condition where nothing cancels."""
    base = evaluate(xs)
    scale = {k: np.zeros(v.shape) for k, v in base.items()}
    for seed in (5, 6):
        rng = np.random.default_rng(seed)
        moved = evaluate([x * (1 + MOVE * rng.choice([-1.0, 1.0], np.shape(x))) for x in xs])
        for k, v in base.items():
            if k in moved and moved[k].shape == v.shape:
                with np.errstate(invalid="ignore", over="ignore"):
                    change = np.abs(moved[k] - v) / MOVE
                scale[k] = np.fmax(scale[k], np.where(np.isfinite(change), change, 0.0))
    return scale


def op_error(got, want, scale):
    """The largest per-element error of ``got`` against ``want`` relative to the element's
    magnitude plus its term scale (float64's smallest normal where both are 0); inf where the
    shapes, the nan places or the infinities differ."""
    if got is None or got.shape != want.shape:
        return float("inf")
    finite = np.isfinite(want)
    if not (np.array_equal(np.isnan(got), np.isnan(want))
            and np.array_equal(got[~finite & ~np.isnan(want)], want[~finite & ~np.isnan(want)])):
        return float("inf")
    denominator = np.abs(want[finite]) + scale[finite] + np.finfo(np.float64).tiny
    with np.errstate(invalid="ignore", over="ignore"):
        error = np.abs(got[finite] - want[finite]) / denominator
    return float(np.nan_to_num(error, nan=np.inf).max(initial=0.0))


def _op_case(ad, case):
    """Per output of the case (value, gradients): ``op_error`` of cuda:0 against the CPU
    (results that are not floats, booleans and indices: 0 where equal, else inf)."""
    xs = case.inputs(np.random.default_rng(4))
    want = _evaluate(ad, case, xs, "cpu")
    got = _evaluate(ad, case, xs, "cuda:0")
    if case.dtype is not None:
        return {"value": 0.0 if np.array_equal(got["value"], want["value"]) else float("inf")}
    scale = term_scale(lambda inputs: _evaluate(ad, case, inputs, "cpu"), xs)
    return {k: op_error(got.get(k), w, scale[k]) for k, w in want.items()}


def _save(path, doc):
    """Write ``doc`` as JSON whole (a step stopped mid-way leaves what it had done)."""
    part = path.with_suffix(".part")
    part.write_text(json.dumps(doc, indent=1, default=float) + "\n")
    part.replace(path)


STEPS = {"reason": reason, "env": env, "kernels": kernels, "fused": fused, "ops": ops}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] not in STEPS:
        print(f"usage: python -m benchmarks.gpu_steps {{{'|'.join(STEPS)}}} OUT",
              file=sys.stderr)
        return 2
    out = pathlib.Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    return STEPS[argv[0]](out)


if __name__ == "__main__":
    sys.exit(main())
