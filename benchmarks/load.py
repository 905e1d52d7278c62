"""How loaded the machine was while a suite ran, so that results taken on a busy machine are
marked unreliable (under load, a framework's thread pool can collapse many times over and
hand its peers wins they did not earn).

Before and after each suite the harness records the 1-minute load average
(``os.getloadavg``) and the CPU model. The load average counts the benchmark's own busy
threads too, so the benchmark's share is taken off: the CPU use of the harness and every
process under it (its workers, their helpers, the import-time children), in CPU seconds per
second, passed through the same 1-minute exponential average the kernel applies. What is
left, per core, is the load of other processes; above ``LIMIT_PER_CORE`` in either reading,
or with the CPU model changed in between, the suite's results are unreliable.
"""
import math
import os
import time

from . import machine

LIMIT_PER_CORE = 0.5
WINDOW_S = 60.0  # the load average's time constant
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def tree_cpu(pid=None):
    """CPU seconds used by a process (this one by default), the children it has waited for,
    and its live descendants, from /proc; where there is no /proc, this process and its
    waited-for children only (so the load of live workers then counts as other processes')."""
    pid = pid or os.getpid()
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        if pid != os.getpid():
            return 0.0  # (it has just ended)
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system
    total = sum(int(v) for v in fields[11:15]) / _TICK  # utime, stime, cutime, cstime
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return total
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                children = f.read().split()
        except OSError:
            continue
        total += sum(tree_cpu(int(child)) for child in children)
    return total


class Meter:
    """Readings of the load and of the benchmark's own share of it. ``own_cpu()`` returns the
    CPU seconds the benchmark's processes have used so far."""

    def __init__(self, own_cpu=tree_cpu):
        self.own_cpu = own_cpu
        self.t, self.cpu, self.own = time.monotonic(), own_cpu(), 0.0

    def reading(self):
        """{"load1": the 1-minute load average (None where the OS has none), "own": the
        benchmark's share of it, "cpu": the CPU model}."""
        now, cpu = time.monotonic(), self.own_cpu()
        if now > self.t:
            decay = math.exp(-(now - self.t) / WINDOW_S)
            rate = max(0.0, cpu - self.cpu) / (now - self.t)
            self.own = self.own * decay + rate * (1 - decay)
        self.t, self.cpu = now, cpu
        try:
            load1 = os.getloadavg()[0]
        except (AttributeError, OSError):
            load1 = None
        return {"load1": None if load1 is None else round(load1, 3), "own": round(self.own, 3),
                "cpu": machine.cpu_model()}


def judge(suite, before, after, cores):
    """A suite's load record: both readings, the other processes' load per core (the larger
    of the two readings) and, when that is over the limit or the CPU model changed,
    ``unreliable``: why."""
    entry = {"suite": suite, "before": before, "after": after, "cores": cores}
    loads = [r["load1"] - r["own"] for r in (before, after) if r["load1"] is not None]
    if loads:
        entry["per_core"] = round(max(0.0, *loads) / cores, 3)
    if before["cpu"] != after["cpu"]:
        entry["unreliable"] = f"the CPU model changed from {before['cpu']} to {after['cpu']}"
    elif entry.get("per_core", 0) > LIMIT_PER_CORE:
        entry["unreliable"] = (f"load {entry['per_core']:.2f} per core from other processes "
                               f"(above {LIMIT_PER_CORE}: {max(loads):.2f} on {cores} cores "
                               "besides the benchmark's own)")
    return entry


def unreliable(doc):
    """The load records of a results document's suites that ran under load."""
    return [e for e in doc.get("load", []) if "unreliable" in e]


def summary(doc):
    """One phrase on a run's load: the most any suite saw, or that it was not recorded."""
    seen = [e["per_core"] for e in doc.get("load", []) if "per_core" in e]
    bad = unreliable(doc)
    if seen:
        text = f"load from other processes at most {max(seen):.2f} per core"
    elif "load" not in doc:
        text = "load not recorded (the run predates the load readings)"
    else:
        text = "load not recorded (no load average on this system)"
    if bad:
        text += " (UNRELIABLE: " + ", ".join(e["suite"] for e in bad) + " ran under load)"
    return text
