"""``python -m benchmarks report results.json [more.json]``: a markdown report (every case,
every framework, gpuad / torch, and where gpuad stands against its target) and PNG plots of
the scaling curves, with lines per framework and device.

With results from several machines, a target is met only where it holds on every machine
that measured the case, and the spread across machines is tabled. A case measured while
the machine was under load (``benchmarks.load``) is marked unreliable."""
import functools
import json
import pathlib

from . import data_parallel, load, machine, suites

TARGET_IMPORT_S = 0.3
LABELS = {"scaling_chain": ("elements", "µs per step"),
          "scaling_mlp_batch": ("batch size", "ms per step"),
          "scaling_mlp_width": ("width", "ms per step")}
#: a goal's fourth element for a value that must be at least the limit (data_parallel's
#: bandwidth against bare mpi4py); False or True: at most, or strictly below
AT_LEAST = "at least"
#: a framework's column header where it is not the framework's name: the NumPy peer is
#: written as plainly as the references (temporaries allocated for every operation), not as
#: a tuned lower bound
HEADERS = {"numpy": "naive NumPy"}


def column(framework):
    return HEADERS.get(framework, framework)


def load_docs(paths):
    """The results documents in ``paths``; ValueError naming a file that is not one."""
    docs = []
    for p in paths:
        doc = json.loads(pathlib.Path(p).read_text())
        if not isinstance(doc, dict) or not {"device", "machine", "cases"} <= doc.keys():
            raise ValueError(f"{p} is not a results file of python -m benchmarks run")
        docs.append(doc)
    return docs


def _goal(record):
    """(what gpuad must reach, the measured value, the limit, whether the value must be
    strictly below the limit (``AT_LEAST``: at least the limit)[, the number to compare across
    machines where that is not the measured value: the compiled chain's × torch eager when its
    µs per op decide]) for a case with a target, else None."""
    if record["suite"] in suites.SCALING or record["suite"] == "kernels":
        return None
    if record["suite"] == "data_parallel":  # (the flat buffer's all-reduce over MPI only)
        if "vs_mpi4py" not in record or record["params"].get("buffer") != "flat":
            return None
        limit = suites.DATA_PARALLEL_TARGET
        return f"≥ {limit:.2f}× bare mpi4py", record["vs_mpi4py"], limit, AT_LEAST
    g = record["results"].get("gpuad", {})
    if record.get("variant") == "compiled":
        limit = suites.COMPILED_TARGETS[record["suite"]]
        if "ratio_plain" not in record or suites.COMPILED_TARGET_CASES[
                record["suite"]] != record["case"]:
            return None
        text = f"≤ {limit:.2f}× torch eager"
        absolute = suites.COMPILED_UNIT_TARGETS.get(record["suite"])
        if absolute is None:
            return text, record["ratio_plain"], limit, False
        text += f" and ≤ {absolute:g} {record['unit']}"
        if g.get("median", 0) > absolute:  # (both must hold: the one that fails decides)
            return text, g["median"], absolute, False, record["ratio_plain"]
        return text, record["ratio_plain"], limit, False
    if record.get("variant"):
        limit = suites.VARIANT_TARGETS[record["variant"]]
        if "vs_plain" not in g:
            return None
        return f"≤ {limit:.2f}× gpuad plain", g["vs_plain"], limit, False
    if record["suite"] == "import_time":
        if "median" not in g:
            return None
        return f"< {TARGET_IMPORT_S} s", g["median"], TARGET_IMPORT_S, True
    if "ratio" not in record:
        return None
    limit = suites.CASE_TARGETS.get((record["suite"], record["case"]), 1.0)
    return f"≤ {limit:.2f}× torch", record["ratio"], limit, False


def target(record):
    """(what gpuad must reach, whether it does, by how much it misses) for a case with a
    target: at least as fast as PyTorch, imports under 0.3 s, a variant (the anomaly mode)
    at most its target times gpuad's plain step, a compiled step at most its target times
    PyTorch's eager step; None for the others."""
    goal = _goal(record)
    if goal is None:
        return None
    text, value, limit, strict = goal[:4]
    met = value >= limit if strict == AT_LEAST else value < limit if strict else value <= limit
    return text, met, f"{value / limit - 1:+.0%}"


def target_value(record):
    """The number a case's target is about (gpuad / torch, seconds, × plain), or None."""
    goal = _goal(record)
    return None if goal is None else goal[-1] if len(goal) > 4 else goal[1]


def measured(docs):
    """Every measurement of each case with a target, across the documents: (device, suite,
    case) -> [(the machine's model, the record)]."""
    table = {}
    for doc in docs:
        for r in doc["cases"]:
            if target(r) is not None:
                table.setdefault((doc["device"], r["suite"], r["case"]), []).append(
                    (machine.model(doc), r))
    return table


def verdict(doc, record, table):
    """The target column of ``record`` (measured on ``doc``'s machine): met only when the
    target holds on every machine in ``table`` (``measured(docs)``) that measured the case."""
    t = target(record)
    if t is None:
        return ""
    entries = table.get((doc["device"], record["suite"], record["case"]), [])
    if not t[1]:
        return f"missed by {t[2]}"
    missed = [f"{m} ({target(r)[2]})" for m, r in entries
              if r is not record and not target(r)[1]]
    if missed:
        return "met here; missed on " + ", ".join(missed)
    machines = len({m for m, _ in entries})
    return "met" + (f" on all {machines} machines" if machines > 1 else "")


def spread(docs):
    """Markdown tables, one per device measured on more than one machine: each case with a
    target, its value on every machine, the spread (lowest–highest) and whether the target
    holds on all of them."""
    table, lines = measured(docs), []
    for device in dict.fromkeys(d["device"] for d in docs):
        models = list(dict.fromkeys(machine.model(d) for d in docs if d["device"] == device))
        if len(models) < 2:
            continue
        lines += [f"Across the {len(models)} {device} machines (the number each target is "
                  "about: gpuad / torch, seconds, or × plain):", "",
                  "| suite | case | " + " | ".join(models) + " | spread | target |",
                  "|---" * (len(models) + 4) + "|"]
        for (dev, suite, case), entries in table.items():
            if dev != device:
                continue
            values = {m: target_value(r) for m, r in entries}
            met = all(target(r)[1] for _, r in entries)
            goal = target(entries[0][1])[0]
            lines.append(f"| {suite} | {case} | " + " | ".join(
                f"{values[m]:.3g}" if m in values else "—" for m in models)
                + f" | {min(values.values()):.3g}–{max(values.values()):.3g} | {goal}: "
                + (f"met on all {len(values)}" if met else "missed") + " |")
        lines.append("")
    return lines


def missing_lines(doc):
    """A note naming the cases the suites define that a document's run predates (in the
    suites it ran), or nothing."""
    present = {(r["suite"], r["case"]) for r in doc["cases"]}
    missing = [f"{c.suite} {c.name}" for suite in dict.fromkeys(s for s, _ in present)
               if suite in suites.SUITES and suites.SUITES[suite][1] is not None
               for c in suites.cases(suite, doc["quick"], doc["device"])
               if (c.suite, c.name) not in present]
    return ["Not in this run (the suites gained them after it): " + ", ".join(missing) + ".",
            ""] if missing else []


def _verdict_text(doc, table, record):
    """The target column of ``record``: the target and whether it is met, or nothing."""
    t = target(record)
    return "" if t is None else f"{t[0]}: {verdict(doc, record, table)}"


def ratio_text(record):
    """gpuad / torch, and for a compiled step also gpuad compiled / PyTorch eager."""
    text = f"{record['ratio']:.2f}" if "ratio" in record else ""
    if record.get("variant") == "compiled" and "ratio_plain" in record:
        text += f" ({record['ratio_plain']:.2f}× torch eager)"
    return text


def _cell(r, unit):
    if r is None:
        return ""
    if r["status"] != "ok":
        return r["status"]
    if "median" not in r:
        return "ok"
    text = f"{r['median']:.3g}"
    if "vs_plain" in r:
        text += f" ({r['vs_plain']:.2f}× plain)"
    if "gb_per_s" in r:
        text += f" ({r['gb_per_s']:.1f} GB/s)"
    return text


def _versions(doc):
    return ", ".join(f"{f} {v['version']}" for f, v in doc["frameworks"].items()
                     if v["status"] == "ok")


def header(doc):
    m = doc["machine"]
    where = m["gpu"] if doc["device"] == "cuda" and m.get("gpu") else m["cpu"]
    return (f"{doc['device']} on {where}, {m['threads']} threads per framework "
            f"({m['cores']} cores), Python {m['python']}; {_versions(doc)}; "
            f"{'quick run' if doc['quick'] else 'full run'} of {doc['created']}; "
            f"{load.summary(doc)}")


def unreliable_lines(doc, suite):
    """A note for each suite of ``doc`` that ran under load."""
    return [f"**Unreliable**: {e['unreliable']} while {e['suite']} ran; its results are "
            "not evidence." for e in load.unreliable(doc) if e["suite"] == suite]


def markdown(docs, plots=()):
    lines, table = ["# gpuad benchmark report", ""], measured(docs)
    for doc in docs:
        lines += [f"## {doc['device']}: {machine.model(doc)}", "", header(doc), "",
                  *missing_lines(doc)]
        skipped = {f: v["reason"] for f, v in doc["frameworks"].items() if v["status"] != "ok"}
        for f, why in skipped.items():
            lines.append(f"- {f}: skipped ({why})")
        if skipped:
            lines.append("")
        frameworks = [f for f in suites.FRAMEWORKS if f not in skipped and f in doc["frameworks"]]
        for suite in dict.fromkeys(r["suite"] for r in doc["cases"]):
            records = [r for r in doc["cases"] if r["suite"] == suite]
            lines += [f"### {suite}", "", suites.SUITES[suite][0] + ".", ""]
            notes = unreliable_lines(doc, suite)
            if notes:
                lines += notes + [""]
            if suite == "kernels":
                lines += ["```", json.dumps(records[0]["results"], indent=1), "```", ""]
                continue
            if suite == "data_parallel":
                lines += data_parallel.markdown(records, functools.partial(
                    _verdict_text, doc, table))
                continue
            used = [f for f in frameworks if any(f in r["results"] for r in records)]
            lines.append("| case | unit | " + " | ".join(map(column, used))
                         + " | gpuad / torch | target |")
            lines.append("|---" * (len(used) + 4) + "|")
            for r in records:
                t = target(r)
                goal = "" if t is None else f"{t[0]}: {verdict(doc, r, table)}"
                ratio = ratio_text(r)
                case = r["case"] + (" (unreliable)" if "unreliable" in r else "")
                lines.append(f"| {case} | {r['unit']} | " + " | ".join(
                    _cell(r["results"].get(f), r["unit"]) for f in used)
                    + f" | {ratio} | {goal} |")
            lines.append("")
        lines += ["Medians over the samples (each sample a run of steps sized to about "
                  f"{'5' if doc['quick'] else '50'} ms); gpuad / torch is the median of the "
                  "per-round ratios (the frameworks take turns within each round); a variant's "
                  "× plain is the median of the per-round ratios to the framework's plain step "
                  "(for the compiled suites, its eager step; × torch eager compares gpuad "
                  "compiled with PyTorch eager).",
                  ""]
    lines += spread(docs)
    for path in plots:
        lines += [f"![{path.stem}]({path.name})", ""]
    return "\n".join(lines)


def plot(docs, out_dir):
    """One PNG per scaling suite: time against size for gpuad and torch on each device, and
    gpuad / torch below it. Returns the paths written ([] without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    for suite, (xlabel, ylabel) in LABELS.items():
        series = []
        for doc in docs:
            records = [r for r in doc["cases"] if r["suite"] == suite]
            for f in ("gpuad", "torch"):
                pts = [(r["x"], r["results"][f]["median"]) for r in records
                       if r["results"].get(f, {}).get("median") is not None]
                if pts:
                    series.append((f, doc, pts))
            ratios = [(r["x"], r["ratio"]) for r in records if "ratio" in r]
            if ratios:
                series.append(("gpuad / torch", doc, ratios))
        if not series:
            continue
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.4, 6), sharex=True,
                                          gridspec_kw={"height_ratios": [2, 1]})
        for name, doc, pts in series:
            xs, ys = zip(*pts)
            style = "-" if doc["device"] == "cpu" else "--"
            axis = bottom if name == "gpuad / torch" else top
            axis.plot(xs, ys, style, marker="o", label=f"{name} ({machine.model(doc)})")
        top.set_xscale("log")
        top.set_yscale("log")
        top.set_ylabel(ylabel)
        top.set_title(suites.SUITES[suite][0])
        top.legend()
        bottom.axhline(1.0, color="grey", linewidth=0.8)
        bottom.set_ylabel("gpuad / torch")
        bottom.set_xlabel(xlabel)
        bottom.legend()
        fig.tight_layout()
        path = pathlib.Path(out_dir) / f"{suite}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path)
    return written


def write(paths, out_dir=None):
    """report.md and the plots from the results files ``paths``; returns the paths written."""
    docs = load_docs(paths)
    out_dir = pathlib.Path(out_dir or pathlib.Path(paths[0]).parent)
    out_dir.mkdir(parents=True, exist_ok=True)
    pngs = plot(docs, out_dir)
    md = out_dir / "report.md"
    md.write_text(markdown(docs, pngs))
    return [md, *pngs]
