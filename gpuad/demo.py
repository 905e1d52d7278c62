"""``python -m gpuad demo``: train an MLP on the bundled handwritten digits (8x8 images, 1,797
samples) on the best available device, with a progress line per epoch, then report the test
accuracy, the time per epoch and the device. Optional: a checkpoint (``--save``) and a plot of
the curves (``--plot``, needs matplotlib).

Every option, output path, optional package and the device are checked before training starts,
so a mistake costs no training run."""
import argparse
import importlib
import math
import pathlib
import time

import numpy as np

from ._cli import CommandError
from .backends.probe import install_hint

DESCRIPTION = ("Train a 64-128-128-10 MLP on the handwritten digits bundled with gpuad (8x8 "
               "images, 1,797 samples), then report the test accuracy, the time per epoch "
               "and the device.")


def add_arguments(p):
    """The demo's options, on the parser ``p`` (its help shows every default)."""
    p.add_argument("--device", type=_device, default=None,
                   help="auto, cpu, cuda or cuda:N (default: GPUAD_DEVICE, else auto: cuda:0 "
                   "where a GPU is usable, else cpu)")
    p.add_argument("--epochs", type=_int_from(1, "positive int"), default=20,
                   help="passes over the training set (default: %(default)s)")
    p.add_argument("--batch-size", type=_int_from(1, "positive int"), default=64,
                   help="samples per step (default: %(default)s)")
    p.add_argument("--lr", type=_positive_float, default=3e-3,
                   help="Adam's learning rate (default: %(default)s)")
    p.add_argument("--seed", type=_int_from(0, "non-negative int"), default=0,
                   help="seed of the weights, the split and the batches (default: %(default)s)")
    p.add_argument("--compile", action="store_true",
                   help="train with the step compiled by ad.compile (traced, then replayed "
                   "without Python per op)")
    p.add_argument("--distributed", action="store_true",
                   help="train data-parallel across the processes of an mpiexec, mpirun or "
                   "srun launch, or of torchrun-style variables (one process per GPU; "
                   "--batch-size is per process); rank 0 reports")
    p.add_argument("--backend", choices=("auto", "mpi", "nccl"), default=None,
                   help="with --distributed: the communicators (default: mpi on the CPU, "
                   "auto on a GPU: NCCL where usable)")
    p.add_argument("--save", metavar="PATH", default=None,
                   help="write a checkpoint (safetensors) here (default: none)")
    p.add_argument("--plot", metavar="PATH", default=None,
                   help="write a PNG of the loss and accuracy curves here, needs matplotlib "
                   "(default: none)")
    return p


def _int_from(low, name):
    """argparse type: an int of at least ``low``; argparse's message names it ``name``."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {name} value: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(
                f"invalid {name} value: {text!r} (must be {low} or more)")
        return value

    parse.__name__ = name
    return parse


def _positive_float(text):
    """argparse type: a finite number above 0 (a learning rate)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid positive float value: {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(
            f"invalid positive float value: {text!r} (must be a finite number above 0)")
    return value


def _device(text):
    """argparse type: a device name (whether it is usable is checked before training)."""
    import gpuad as ad

    if text.strip().lower() == "auto":
        return "auto"
    try:
        return str(ad.device(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid device value: {text!r} (use auto, cpu, cuda or cuda:N)") from None


def _prepare(args):
    """Check, before training, what would otherwise fail after it: the optional packages and
    output paths asked for, and the device (with GPUAD_DEVICE and GPUAD_CPU_FALLBACK). The
    chosen device becomes the default one. Returns it."""
    if getattr(args, "backend", None) and not getattr(args, "distributed", False):
        raise CommandError("--backend applies to --distributed training only; add "
                           "--distributed, or leave --backend out")
    if args.save and args.plot and pathlib.Path(args.save).resolve() == \
            pathlib.Path(args.plot).resolve():
        raise CommandError(f"--save and --plot name the same file, {args.save}")
    if args.save:
        _need("safetensors.numpy", "--save", "safetensors")
        _check_writable(args.save, "--save")
    if args.plot:
        _check_plot_format(args.plot)
        _check_writable(args.plot, "--plot")
    return _resolve_device(args.device)


def _need(module, option, package):
    try:
        importlib.import_module(module)
    except ImportError:
        raise CommandError(f"{option} needs the {package} package: "
                           + install_hint("demo", package)) from None


def _check_writable(path, option):
    """Refuse a path that cannot be written: a directory, a missing folder, no permission. The
    check writes nothing: an existing file is opened to append, a new one made and removed."""
    target = pathlib.Path(path)
    if target.is_dir():
        raise CommandError(f"{option} {path}: is a directory; give a file name")
    if not target.parent.is_dir():
        raise CommandError(f"{option} {path}: the folder {target.parent} does not exist")
    try:
        if target.exists():
            open(target, "ab").close()
        else:
            open(target, "xb").close()
            target.unlink()
    except OSError as exc:
        raise CommandError(f"{option} {path}: cannot write there ({exc.strerror or exc})") \
            from None


def _check_plot_format(path):
    """matplotlib is installed and writes the format the path's suffix names (PNG without
    one)."""
    _matplotlib()
    from matplotlib.backend_bases import FigureCanvasBase

    suffix = pathlib.Path(path).suffix.lower().lstrip(".")
    formats = FigureCanvasBase.get_supported_filetypes()
    if suffix and suffix not in formats:
        raise CommandError(f"--plot {path}: matplotlib cannot write .{suffix} files; use one "
                           f"of {', '.join('.' + f for f in sorted(formats))}")


def _resolve_device(name):
    """The device to train on, made the default (so the model is built there); a bad
    setting or an unusable GPU is a CommandError."""
    import gpuad as ad
    from gpuad.devices import cpu_fallback_enabled

    try:
        cpu_fallback_enabled()  # (a bad GPUAD_CPU_FALLBACK is refused even on the CPU)
        if name is not None:
            ad.set_default_device(name)
        return ad.get_default_device()
    except (ValueError, ad.DeviceUnavailableError) as exc:
        raise CommandError(str(exc)) from None


def _plural(n, word):
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _progress(epochs):
    """tqdm's bar when it is installed, else a plain line per epoch."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=epochs, unit="epoch", ncols=90)


def run(args):
    """Train and report (``args`` from :func:`add_arguments`); returns the exit status."""
    import gpuad as ad
    from gpuad.data import load_digits

    dev = _prepare(args)
    distributed = getattr(args, "distributed", False)
    if distributed:
        dev = _join(ad, dev, args.backend)
    main = not distributed or ad.distributed.is_main_process()
    say = print if main else (lambda *_, **__: None)
    ad.manual_seed(args.seed)
    images, labels = load_digits()
    order = np.random.default_rng(args.seed).permutation(len(labels))
    test, train = order[:360], order[360:]
    x_train, y_train = ad.tensor(images[train], device=dev), ad.tensor(labels[train], device=dev)
    x_test, y_test = ad.tensor(images[test], device=dev), ad.tensor(labels[test], device=dev)
    nn = ad.nn
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(),
                          nn.Linear(128, 10))  # (on dev: the default device now)
    if distributed:
        model = nn.parallel.DistributedDataParallel(model)
        say(f"world size {ad.distributed.get_world_size()} "
            f"({ad.distributed.get_backend()}): each process trains on its share")
    opt = ad.optim.Adam(model.parameters(), lr=args.lr)
    say(f"training a 64-128-128-10 MLP on {len(train)} digits on {dev} "
        f"({_plural(args.epochs, 'epoch')}, batch {args.batch_size}"
        + (" per process" if distributed else "")
        + (", compiled step)" if getattr(args, "compile", False) else ")"))
    history = _train(ad, model, opt, (x_train, y_train), (x_test, y_test), args, main)
    acc = history["test_acc"][-1]
    say(f"test accuracy {acc:.4f}  ({history['seconds'] / args.epochs * 1e3:.1f} ms per "
        f"epoch on {dev})")
    if distributed:
        ad.distributed.destroy_process_group()
    if not main:
        return 0
    if args.save:
        _write(args.save, "the checkpoint", lambda: ad.save(
            {"model": model.state_dict(), "optimizer": _plain(opt.state_dict()),
             "epochs": args.epochs, "test_accuracy": acc, "seed": args.seed}, args.save))
        print(f"checkpoint written to {args.save}")
    if args.plot:
        _write(args.plot, "the plot", lambda: _plot(history, args.plot))
        print(f"curves written to {args.plot}")
    return 0


def _join(ad, dev, backend):
    """Join the launch's process group (by default MPI for the CPU, NCCL where the GPU is
    used and NCCL is usable); the device this process trains on. A failure is one line,
    naming the fix."""
    if backend is None:
        backend = "mpi" if dev.type == "cpu" else "auto"
    try:
        ad.distributed.init_process_group(backend=backend)
    except (ad.distributed.DistributedError, ValueError) as exc:
        raise CommandError(f"--distributed: {exc}") from None
    group_device = ad.distributed.group.current.device
    return ad.device(group_device) if group_device != "cpu" else dev


def _epoch_order(ad, args, n, rng, epoch):
    """The training rows of an epoch, in order: a permutation, or under --distributed this
    process's share of the epoch's permutation (disjoint across processes)."""
    if not getattr(args, "distributed", False):
        return rng.permutation(n)
    sampler = ad.distributed.DistributedSampler(n, seed=args.seed + 1)
    sampler.set_epoch(epoch)
    return sampler.indices()


def _train(ad, model, opt, train, test, args, main=True):
    """Train for ``args.epochs``, a progress line (or tqdm bar) per epoch; the loss and
    accuracy curves, and the seconds spent. The epoch's sums stay on the device: one host read
    per epoch (and one more for gpuad's queued checks of the labels and indices), none per
    step, so the GPU never waits for the host inside an epoch."""
    (x_train, y_train), (x_test, y_test) = train, test
    dev, n = x_train.device, len(y_train)
    step = _step(ad, model, opt)
    if getattr(args, "compile", False):  # (an args object made without the option: eager)
        step = ad.compile(step)
    history = {"loss": [], "train_acc": [], "test_acc": []}
    bar = _progress(args.epochs) if main else None
    rng = np.random.default_rng(args.seed + 1)
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        model.train()
        perm = _epoch_order(ad, args, n, rng, epoch)
        total = correct = ad.zeros((), dtype=ad.float64, device=dev)
        for i in range(0, len(perm), args.batch_size):
            idx = ad.tensor(perm[i:i + args.batch_size], device=dev)
            loss_sum, batch_hits = step(x_train[idx], y_train[idx])
            with ad.no_grad():
                total = total + loss_sum
                correct = correct + batch_hits
        loss_sum, hits, test_hits = ad.stack(
            [total, correct, _test_hits(ad, model, x_test, y_test)]).numpy()
        seen = len(perm)
        if getattr(args, "distributed", False):  # (every process's rows)
            sums = ad.distributed.reduce_metrics({"loss": loss_sum, "hits": hits,
                                                  "seen": seen}, op="sum")
            loss_sum, hits, seen = sums["loss"], sums["hits"], sums["seen"]
        history["loss"].append(float(loss_sum) / seen)
        history["train_acc"].append(float(hits) / seen)
        history["test_acc"].append(float(test_hits) / len(y_test))
        line = (f"loss {history['loss'][-1]:.4f}  train acc {history['train_acc'][-1]:.3f}  "
                f"test acc {history['test_acc'][-1]:.3f}")
        if bar is not None:
            bar.set_postfix_str(line)
            bar.update()
        elif main:
            print(f"epoch {epoch:3d}  {line}", flush=True)
    history["seconds"] = time.perf_counter() - start
    if bar is not None:
        bar.close()
    return history


def _step(ad, model, opt):
    """One training step on a batch: ``(loss summed over the batch, hits)``, float64 0-d
    tensors (on the device: nothing is read back)."""
    def step(x, labels):
        logits = model(x)
        loss = ad.nn.functional.cross_entropy(logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with ad.no_grad():
            return loss.astype(ad.float64) * len(labels), _hits(ad, logits, labels)

    return step


def _write(path, what, write):
    """Run ``write``; an OSError (a full disk, say) becomes a one-line failure (status 1)."""
    try:
        write()
    except OSError as exc:
        raise CommandError(f"could not write {what} to {path}: {exc.strerror or exc}",
                           code=1) from None


def _hits(ad, logits, labels):
    """How many rows of ``logits`` pick their label, as a float64 0-d tensor on the device."""
    return (logits.argmax(axis=1) == labels).sum().astype(ad.float64)


def _test_hits(ad, model, x, y):
    model.eval()
    with ad.no_grad():
        return _hits(ad, model(x), y)


def _plain(state):
    """An optimizer state dict with its arrays as NumPy (for the checkpoint)."""
    import gpuad as ad

    def conv(v):
        if isinstance(v, dict):
            return {k: conv(w) for k, w in v.items()}
        if isinstance(v, (list, tuple)):
            return [conv(w) for w in v]
        if hasattr(v, "shape") and not isinstance(v, ad.Tensor):
            return np.asarray(v.get() if hasattr(v, "get") else v)
        return v

    return conv(state)


def _matplotlib():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CommandError("--plot needs the matplotlib package: "
                           + install_hint("demo", "matplotlib")) from None
    return plt


def _plot(history, path):
    plt = _matplotlib()
    epochs = range(1, len(history["loss"]) + 1)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.plot(epochs, history["loss"])
    left.set(xlabel="epoch", ylabel="training loss", title="loss")
    right.plot(epochs, history["train_acc"], label="train")
    right.plot(epochs, history["test_acc"], label="test")
    right.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    right.legend()
    fig.tight_layout()
    suffix = pathlib.Path(path).suffix  # (without one, PNG at exactly this path)
    fig.savefig(path, dpi=100, format=None if suffix else "png")
    plt.close(fig)
