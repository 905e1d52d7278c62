"""``python -m gpuad demo``: train an MLP on the bundled handwritten digits (8x8 images, 1,797
samples) on the best available device, with a progress line per epoch, then report the test
accuracy, the time per epoch and the device. Optional: a checkpoint (``--save``) and a plot of
the curves (``--plot``, needs matplotlib)."""
import argparse
import time

import numpy as np


def _parser():
    p = argparse.ArgumentParser(prog="python -m gpuad demo", description=__doc__.split("\n")[0])
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the best "
                   "available)")
    p.add_argument("--epochs", type=_positive, default=20)
    p.add_argument("--batch-size", type=_positive, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save", metavar="PATH", help="write a checkpoint (safetensors) here")
    p.add_argument("--plot", metavar="PATH", help="write a PNG of the loss and accuracy curves")
    return p


def _positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _progress(epochs):
    """tqdm's bar when it is installed, else a plain line per epoch."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=epochs, unit="epoch", ncols=90)


def main(argv=None):
    args = _parser().parse_args(argv)
    import gpuad as ad
    from gpuad.data import load_digits

    if args.plot:
        _matplotlib()  # before training, not after
    ad.manual_seed(args.seed)
    dev = ad.device(args.device) if args.device else ad.get_default_device()
    images, labels = load_digits()
    order = np.random.default_rng(args.seed).permutation(len(labels))
    test, train = order[:360], order[360:]
    x_train, y_train = ad.tensor(images[train], device=dev), ad.tensor(labels[train], device=dev)
    x_test, y_test = ad.tensor(images[test], device=dev), ad.tensor(labels[test], device=dev)
    nn = ad.nn
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(),
                          nn.Linear(128, 10)).to(dev)
    opt = ad.optim.Adam(model.parameters(), lr=args.lr)
    dev = x_train.device  # (where the data really is: CPU fallback may have moved it)
    print(f"training a 64-128-128-10 MLP on {len(train)} digits on {dev} "
          f"({args.epochs} epochs, batch {args.batch_size})")
    history = {"loss": [], "train_acc": [], "test_acc": []}
    bar = _progress(args.epochs)
    rng = np.random.default_rng(args.seed + 1)
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        model.train()
        perm = rng.permutation(len(train))
        total, correct = 0.0, 0
        for i in range(0, len(perm), args.batch_size):
            idx = ad.tensor(perm[i:i + args.batch_size], device=dev)
            logits = model(x_train[idx])
            loss = ad.nn.functional.cross_entropy(logits, y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            correct += int((logits.argmax(axis=1) == y_train[idx]).sum().item())
        history["loss"].append(total / len(train))
        history["train_acc"].append(correct / len(train))
        history["test_acc"].append(_accuracy(ad, model, x_test, y_test))
        line = (f"loss {history['loss'][-1]:.4f}  train acc {history['train_acc'][-1]:.3f}  "
                f"test acc {history['test_acc'][-1]:.3f}")
        if bar is not None:
            bar.set_postfix_str(line)
            bar.update()
        else:
            print(f"epoch {epoch:3d}  {line}", flush=True)
    elapsed = time.perf_counter() - start
    if bar is not None:
        bar.close()
    acc = history["test_acc"][-1]
    print(f"test accuracy {acc:.4f}  ({elapsed / max(args.epochs, 1) * 1e3:.1f} ms per epoch "
          f"on {dev})")
    if args.save:
        ad.save({"model": model.state_dict(), "optimizer": _plain(opt.state_dict()),
                 "epochs": args.epochs, "test_accuracy": acc, "seed": args.seed}, args.save)
        print(f"checkpoint written to {args.save}")
    if args.plot:
        _plot(history, args.plot)
        print(f"curves written to {args.plot}")
    return 0


def _accuracy(ad, model, x, y):
    model.eval()
    with ad.no_grad():
        return float((model(x).argmax(axis=1) == y).astype(ad.float32).mean().item())


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
        raise SystemExit("--plot needs matplotlib: pip install 'gpuad[demo]'") from None
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
    fig.savefig(path, dpi=100)
    plt.close(fig)
