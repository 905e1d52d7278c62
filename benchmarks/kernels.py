"""Bandwidth of gpuad's CUDA kernels (needs a CUDA GPU and CuPy).

In one run:
- device-to-device copy bandwidth (bytes read plus written), the reference;
- each fused elementwise forward and derivative at 2^26 float32 elements, as achieved
  bandwidth and as a fraction of the copy bandwidth;
- fused softmax cross-entropy forward plus backward at (8192, 1000), against PyTorch's
  ``F.cross_entropy`` where torch is installed.
Every kernel result is checked against the CPU (NumPy) backend on a sample first. Timing uses
CUDA events; the median of the repetitions is reported.

    python -m benchmarks.kernels [--n 67108864] [--reps 20] [--json out.json]
"""
import argparse
import json
import statistics


def _timer(cupy, fn, reps):
    start, stop = cupy.cuda.Event(), cupy.cuda.Event()
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, stop) * 1e-3)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1 << 26)
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()

    import numpy as np

    import gpuad as ad

    if not ad.cuda.is_available():
        from gpuad.backends.probe import cuda_unavailable_reason

        raise SystemExit(f"benchmarks.kernels needs a CUDA GPU: {cuda_unavailable_reason(0)}")
    import cupy

    from gpuad.backends.kernel_table import kernel_rows

    backend = ad.device("cuda").backend
    n = args.n
    x = cupy.random.default_rng(0).standard_normal(n, dtype=cupy.float32) * 2
    g = cupy.ones(n, dtype=cupy.float32)
    out = cupy.empty_like(x)
    copy_s = _timer(cupy, lambda: cupy.copyto(out, x), args.reps)
    copy_bw = 2 * 4 * n / copy_s
    print(f"copy: {copy_bw / 1e9:.1f} GB/s (read + write)")
    params = {"leaky_relu": (0.01,), "elu": (1.0,), "softplus": (1.0, 20.0)}
    results = {"copy_GBps": copy_bw / 1e9, "elementwise": {}}
    cpu = ad.device("cpu").backend
    sample = cupy.asnumpy(x[:4096])
    for row in kernel_rows():
        nums = params.get(row.name, ())
        entry = {}
        if row.kernel_forward:
            fwd = backend.kernels.elementwise(f"{row.kernel}_fwd", np.float32, 1, len(nums))
            # correctness against the NumPy backend on a sample, before timing
            got = cupy.asnumpy(fwd(x[:4096], *nums))
            with np.errstate(all="ignore"):
                want = row.backend_forward(cpu, sample, *nums)
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, equal_nan=True)
            s = _timer(cupy, lambda fwd=fwd, nums=nums: fwd(x, *nums), args.reps)
            entry |= {"forward_GBps": 8 * n / s / 1e9, "forward_of_copy": 8 * n / s / copy_bw}
        bwd = backend.kernels.elementwise(f"{row.kernel}_bwd", np.float32, 2, len(nums))
        s = _timer(cupy, lambda bwd=bwd, nums=nums: bwd(g, x, *nums), args.reps)
        entry |= {"backward_GBps": 12 * n / s / 1e9, "backward_of_copy": 12 * n / s / copy_bw}
        results["elementwise"][row.kernel] = entry
        print(f"{row.kernel:12s} " + "  ".join(f"{k} {v:.2f}" for k, v in entry.items()))

    rows, cols = 8192, 1000
    logits = cupy.random.default_rng(1).standard_normal((rows, cols), dtype=cupy.float32)
    labels = cupy.random.default_rng(2).integers(0, cols, rows).astype(cupy.int64)

    def ours():
        loss, dlogits = backend.fused_cross_entropy(logits, labels, -100, 0.0)
        return loss.mean(), dlogits / rows

    s_ours = _timer(cupy, ours, args.reps)
    results["cross_entropy_ms"] = {"gpuad": s_ours * 1e3}
    print(f"softmax cross-entropy (8192, 1000) fwd+bwd: gpuad {s_ours * 1e3:.3f} ms")
    try:
        import torch
    except ImportError:
        torch = None
        print("torch not installed: no PyTorch comparison")
    if torch is not None and not torch.cuda.is_available():
        print(f"torch {torch.__version__} has no usable CUDA device: no PyTorch comparison")
    elif torch is not None:
        tl = torch.as_tensor(logits, device="cuda").requires_grad_()
        tlab = torch.as_tensor(labels, device="cuda")

        def theirs():
            tl.grad = None
            torch.nn.functional.cross_entropy(tl, tlab).backward()

        s_torch = _timer(cupy, theirs, args.reps)
        results["cross_entropy_ms"]["torch"] = s_torch * 1e3
        print(f"  torch {s_torch * 1e3:.3f} ms, gpuad / torch = {s_ours / s_torch:.2f}")
    results["device"] = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    results["versions"] = {"gpuad": ad.__version__, "cupy": cupy.__version__,
                           "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion()}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
