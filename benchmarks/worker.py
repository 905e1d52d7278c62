"""One framework in its own process: ``python -m benchmarks.worker FRAMEWORK DEVICE THREADS``.

It pins itself to THREADS cores (and the thread pools' environment variables, which the
harness sets before anything is imported), loads the framework, then answers JSON lines on
stdin, one reply line each on the stdout it started with (the framework's own prints go to
stderr):

- ``{"cmd": "build", "suite", "name", "quick"}``: build the case's step (and for a case with a
  variant, the plain step too), run each once and check its result against the float64
  reference; replies ok with the largest error, or ``not_offered``, ``wrong`` or ``error`` with
  the reason;
- ``{"cmd": "time", "reps": n, "plain": false}``: n steps (of the plain step, for a variant's
  case) then one device synchronisation; replies the seconds per step;
- ``{"cmd": "quit"}``.
"""
import importlib
import json
import os
import sys
import time
import traceback

PEERS = {"gpuad": ("gpuad_runs", {}), "torch": ("torch_runs", {}),
         "torch_graph": ("torch_graph_runs", {}),
         "jax": ("jax_runs", {"jit": False}), "jax_jit": ("jax_runs", {"jit": True}),
         "autograd": ("autograd_runs", {}), "numpy": ("numpy_runs", {})}
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


def pin(threads):
    """Use ``threads`` cores: the BLAS and OpenMP pools' sizes, and the process's CPU affinity
    (which also bounds pools that read no variable, like XLA's). Returns the cores used."""
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))[:threads]
    os.sched_setaffinity(0, cpus)
    return cpus


def main():
    framework, device, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    channel = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # the framework's prints must not mix with the replies

    def reply(**msg):
        channel.write(json.dumps(msg) + "\n")
        channel.flush()

    cpus = pin(threads)
    from . import peers, suites
    from .peers import NotOffered, Unavailable

    module, options = PEERS[framework]
    peer = importlib.import_module(f"benchmarks.peers.{module}")
    try:
        version = peer.load(device, threads, **options)
    except ImportError as exc:
        return reply(ready=False, reason=f"not installed ({exc.name or exc})")
    except Unavailable as exc:
        return reply(ready=False, reason=str(exc))
    except Exception as exc:  # a framework that fails to start is skipped, with the reason
        return reply(ready=False, reason=f"failed to start: {type(exc).__name__}: {exc}")
    reply(ready=True, version=version, cpus=cpus)

    steps = {}
    for line in sys.stdin:
        msg = json.loads(line)
        if msg["cmd"] == "quit":
            break
        if msg["cmd"] == "build":
            steps = {}
            (case,) = [c for c in suites.cases(msg["suite"], msg["quick"], device)
                       if c.name == msg["name"]]
            try:
                made = {False: peers.build(peer, case.suite, case.params, device, case.variant)}
                if case.variant is not None:
                    made[True] = peers.build(peer, case.suite, case.params, device)
                error = 0.0
                for step in made.values():
                    out = step()
                    peers.sync(peer, out)
                    error = max(error, suites.check(case, peers.to_numpy(peer, out)))
            except NotOffered as exc:
                reply(ok=False, status="not offered", reason=str(exc))
            except AssertionError as exc:
                reply(ok=False, status="wrong", reason=str(exc))
            except Exception:  # reported whole; the harness decides what it means
                reply(ok=False, status="error", reason=traceback.format_exc(limit=-4))
            else:
                steps = made
                reply(ok=True, max_error=error)
        elif msg["cmd"] == "time":
            reps, step = msg["reps"], steps[msg.get("plain", False)]
            t0 = time.perf_counter()
            for _ in range(reps):
                out = step()
            peers.sync(peer, out)
            reply(seconds=(time.perf_counter() - t0) / reps)


if __name__ == "__main__":
    main()
