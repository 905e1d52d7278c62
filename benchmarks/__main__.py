"""``python -m benchmarks run | report | readme``.

    python -m benchmarks run [--suite NAME ...] [--frameworks gpuad,torch,...] [--device cpu|cuda]
                             [--threads 2] [--quick] [--out benchmarks/results/]
    python -m benchmarks report results.json [--out-dir DIR]   (markdown table and PNG plots)
    python -m benchmarks readme                                (docs/performance.md, README)

``--out`` a folder writes ``<device>-<model>.json`` there (``cpu-amd-epyc.json``): each
machine's results are kept in their own file, and ``readme`` reads every one of them.
"""
import argparse
import json
import os
import pathlib
import sys

from . import suites


def _positive(text):
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"needs at least 1 thread, got {n}")
    return n


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="time the suites, every framework in its own process")
    r.add_argument("--suite", action="append", choices=list(suites.SUITES),
                   help="a suite to run (repeatable; default: all of them)")
    r.add_argument("--frameworks", default=",".join(suites.FRAMEWORKS),
                   help="comma-separated, from " + ", ".join(suites.FRAMEWORKS)
                   + " (missing ones are skipped with a note)")
    r.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    r.add_argument("--threads", type=_positive, default=2,
                   help="threads per framework (default 2)")
    r.add_argument("--quick", action="store_true",
                   help="small sizes and few samples: checks that every suite runs and is right")
    r.add_argument("--out", help="write the results (JSON) to this file; a folder (or a path "
                   "ending in /) gets <device>-<model>.json, and {machine} in a file name "
                   "becomes <device>-<model>")
    rep = sub.add_parser("report", help="a markdown table and PNG plots from a results file")
    rep.add_argument("results", nargs="+")
    rep.add_argument("--out-dir", help="where to write report.md and the plots (default: next "
                     "to the first results file)")
    sub.add_parser("readme", help="regenerate docs/performance.md and README.md's figure from "
                   "benchmarks/results/")
    args = p.parse_args(argv)

    if args.command == "run":
        from . import harness

        frameworks = [f.strip() for f in args.frameworks.split(",") if f.strip()]
        unknown = sorted(set(frameworks) - set(suites.FRAMEWORKS))
        if unknown:
            p.error(f"unknown frameworks {unknown}; choose from {list(suites.FRAMEWORKS)}")
        chosen = args.suite or [s for s in suites.SUITES
                                if args.device == "cuda" or s != "kernels"]
        save = None
        if args.out:
            from . import machine

            folder = pathlib.Path(args.out.replace("{machine}", "_"))
            if not args.out.endswith(("/", os.sep)) and not folder.is_dir():
                folder = folder.parent
            try:  # (before the run: a run of many minutes then has somewhere to go)
                folder.mkdir(parents=True, exist_ok=True)
                writable = os.access(folder, os.W_OK)
            except OSError:
                writable = False
            if not writable:
                p.error(f"--out {args.out}: cannot write into {folder}")

            def save(doc):
                out = machine.result_path(args.out, doc)
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps(doc, indent=1) + "\n")
                return out
        try:
            doc, right = harness.run(chosen, frameworks, args.device, args.quick, args.threads,
                                     save=save)
        except harness.Unusable as exc:
            print(f"benchmarks: {exc}", file=sys.stderr)
            return 2
        if save is not None:
            print(f"wrote {save(doc)}")
        if not right:
            print("FAILED: a result was wrong, a framework errored, or gpuad did not run a "
                  "case (see above)", file=sys.stderr)
            return 1
        return 0
    if args.command == "report":
        from . import report

        try:
            written = report.write(args.results, args.out_dir)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            print(f"benchmarks report: cannot read the results (not a file of `python -m "
                  f"benchmarks run`?): {type(exc).__name__}: {exc}", file=sys.stderr)
            return 2
        for path in written:
            print(f"wrote {path}")
        return 0
    from . import readme

    try:
        print(f"wrote {readme.update()}")
    except readme.Refused as exc:
        print(f"benchmarks readme: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
