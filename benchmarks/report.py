"""``python -m benchmarks report results.json [more.json]``: a markdown report (every case,
every framework, gpuad / torch, and where gpuad stands against its target) and PNG plots of
the scaling curves, with lines per framework and device."""
import json
import pathlib

from . import suites

TARGET_IMPORT_S = 0.3
LABELS = {"scaling_chain": ("elements", "µs per step"),
          "scaling_mlp_batch": ("batch size", "ms per step"),
          "scaling_mlp_width": ("width", "ms per step")}


def load(paths):
    return [json.loads(pathlib.Path(p).read_text()) for p in paths]


def target(record):
    """(what gpuad must reach, whether it does, by how much it misses) for a case with a
    target: at least as fast as PyTorch, imports under 0.3 s, a variant (the anomaly mode)
    at most its target times gpuad's plain step, a compiled step at most its target times
    PyTorch's eager step; None for the others."""
    if record["suite"] in suites.SCALING or record["suite"] == "kernels":
        return None
    g = record["results"].get("gpuad", {})
    if record.get("variant") == "compiled":
        limit = suites.COMPILED_TARGETS[record["suite"]]
        if "ratio_plain" not in record or suites.COMPILED_TARGET_CASES[
                record["suite"]] != record["case"]:
            return None
        return (f"≤ {limit:.2f}× torch eager", record["ratio_plain"] <= limit,
                f"{record['ratio_plain'] / limit - 1:+.0%}")
    if record.get("variant"):
        limit = suites.VARIANT_TARGETS[record["variant"]]
        if "vs_plain" not in g:
            return None
        return (f"≤ {limit:.2f}× gpuad plain", g["vs_plain"] <= limit,
                f"{g['vs_plain'] / limit - 1:+.0%}")
    if record["suite"] == "import_time":
        if "median" not in g:
            return None
        t = g["median"]
        return (f"< {TARGET_IMPORT_S} s", t < TARGET_IMPORT_S,
                f"{t / TARGET_IMPORT_S - 1:+.0%}")
    if "ratio" not in record:
        return None
    return ("≤ 1.00× torch", record["ratio"] <= 1.0, f"{record['ratio'] - 1:+.0%}")


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
            f"{'quick run' if doc['quick'] else 'full run'} of {doc['created']}")


def markdown(docs, plots=()):
    lines = ["# gpuad benchmark report", ""]
    for doc in docs:
        lines += [f"## {doc['device']}", "", header(doc), ""]
        skipped = {f: v["reason"] for f, v in doc["frameworks"].items() if v["status"] != "ok"}
        for f, why in skipped.items():
            lines.append(f"- {f}: skipped ({why})")
        if skipped:
            lines.append("")
        frameworks = [f for f in suites.FRAMEWORKS if f not in skipped and f in doc["frameworks"]]
        for suite in dict.fromkeys(r["suite"] for r in doc["cases"]):
            records = [r for r in doc["cases"] if r["suite"] == suite]
            lines += [f"### {suite}", "", suites.SUITES[suite][0] + ".", ""]
            if suite == "kernels":
                lines += ["```", json.dumps(records[0]["results"], indent=1), "```", ""]
                continue
            used = [f for f in frameworks if any(f in r["results"] for r in records)]
            lines.append("| case | unit | " + " | ".join(used) + " | gpuad / torch | target |")
            lines.append("|---" * (len(used) + 4) + "|")
            for r in records:
                t = target(r)
                goal = "" if t is None else (f"{t[0]}: met" if t[1] else
                                             f"{t[0]}: missed by {t[2]}")
                ratio = ratio_text(r)
                lines.append(f"| {r['case']} | {r['unit']} | " + " | ".join(
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
                    series.append((f, doc["device"], pts))
            ratios = [(r["x"], r["ratio"]) for r in records if "ratio" in r]
            if ratios:
                series.append(("gpuad / torch", doc["device"], ratios))
        if not series:
            continue
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.4, 6), sharex=True,
                                          gridspec_kw={"height_ratios": [2, 1]})
        for name, device, pts in series:
            xs, ys = zip(*pts)
            style = "-" if device == "cpu" else "--"
            axis = bottom if name == "gpuad / torch" else top
            axis.plot(xs, ys, style, marker="o", label=f"{name} ({device})")
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
    docs = load(paths)
    out_dir = pathlib.Path(out_dir or pathlib.Path(paths[0]).parent)
    out_dir.mkdir(parents=True, exist_ok=True)
    pngs = plot(docs, out_dir)
    md = out_dir / "report.md"
    md.write_text(markdown(docs, pngs))
    return [md, *pngs]
