"""Command line: ``python -m gpuad info`` and ``python -m gpuad demo``."""
import argparse
import platform
import sys
import time


def info():
    """Print versions, backends and GPUs, and which piece is missing when CUDA is unusable."""
    import numpy

    import gpuad as ad
    from gpuad.backends.probe import cuda_unavailable_reason, cupy_installed, driver_devices

    print(f"gpuad      {ad.__version__}")
    print(f"python     {platform.python_version()} ({sys.executable})")
    print(f"numpy      {numpy.__version__}")
    print(f"cupy       {'installed' if cupy_installed() else 'not installed'}")
    count, why = driver_devices()
    print(f"gpus       {count}" + (f" ({why})" if why else ""))
    reason = cuda_unavailable_reason(0)
    print(f"cuda       {'usable' if reason is None else 'unavailable: ' + reason}")
    print(f"default    {ad.get_default_device()}")
    if reason is None:
        import cupy

        runtime = cupy.cuda.runtime.runtimeGetVersion()
        print(f"cupy       {cupy.__version__}, CUDA runtime {runtime}")
        for i in range(count):
            free, total = ad.cuda.memory_info(f"cuda:{i}")
            name = cupy.cuda.runtime.getDeviceProperties(i)["name"].decode()
            print(f"cuda:{i}     {name}, {free / 2**30:.1f} of {total / 2**30:.1f} GiB free")
    return 0


def demo(argv):
    """Fit y = sin(3x) with a small tanh network, by plain gradient descent on ``requires_grad``
    parameters, and print the loss as it falls."""
    import gpuad as ad

    p = argparse.ArgumentParser(prog="python -m gpuad demo")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: best available)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    ad.manual_seed(args.seed)
    dev = args.device or ad.get_default_device()
    x = ad.linspace(-1, 1, 256, device=dev).reshape(-1, 1)
    y = ad.sin(x * 3)
    w1 = (ad.randn(1, 32, device=dev) * 1.0).requires_grad_()
    b1 = ad.zeros(32, device=dev, requires_grad=True)
    w2 = (ad.randn(32, 1, device=dev) * 0.2).requires_grad_()
    b2 = ad.zeros(1, device=dev, requires_grad=True)
    params = [w1, b1, w2, b2]
    print(f"training a 1-32-1 tanh network on {ad.tensor(0.0, device=dev).device}")
    start = time.perf_counter()
    for step in range(args.steps + 1):
        pred = ad.tanh(x @ w1 + b1) @ w2 + b2
        loss = ((pred - y) ** 2).mean()
        loss.backward()
        with ad.no_grad():
            for prm in params:
                prm -= args.lr * prm.grad
                prm.grad = None
        if step % (args.steps // 6 or 1) == 0:
            print(f"step {step:4d}  loss {loss.item():.6f}")
    print(f"done in {time.perf_counter() - start:.2f} s")
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m gpuad {info,demo} [options]")
        return 0 if argv else 2
    if argv[0] == "info":
        return info()
    if argv[0] == "demo":
        return demo(argv[1:])
    print(f"unknown command {argv[0]!r}; use info or demo", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
