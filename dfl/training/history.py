"""The loss history kept in state.json, and its plot (history.png)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

HISTORY_MAX_POINTS = 20000   # loss history is halved (pairs averaged) beyond this


def history_append(hist: dict[str, Any], iteration: int, losses: dict[str, float]) -> None:
    """Append one iteration's losses; beyond HISTORY_MAX_POINTS, halve the resolution (pairs averaged)."""
    names = hist.setdefault("names", list(losses))
    hist.setdefault("iters", []).append(iteration)
    hist.setdefault("values", []).append([float(losses.get(n, float("nan"))) for n in names])
    if len(hist["iters"]) > HISTORY_MAX_POINTS:
        it, vals = hist["iters"], hist["values"]
        m = len(it) // 2 * 2
        hist["iters"] = [it[i + 1] for i in range(0, m, 2)] + it[m:]
        hist["values"] = [[(a + b) / 2 for a, b in zip(vals[i], vals[i + 1])] for i in range(0, m, 2)] + vals[m:]


def history_mean(hist: dict[str, Any], last: int = 100) -> dict[str, float]:
    """Mean of the last ``last`` recorded losses by name."""
    vals = hist.get("values", [])[-last:]
    if not vals:
        return {}
    arr = np.asarray(vals, np.float64)
    return {n: float(np.nanmean(arr[:, k])) for k, n in enumerate(hist["names"])}


def history_png(hist: dict[str, Any]) -> bytes | None:
    """A loss-history plot (PNG bytes), log scale like DFL's history view."""
    if not hist.get("iters"):
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 3), dpi=100)
    it = np.asarray(hist["iters"])
    vals = np.asarray(hist["values"], np.float64)
    shown = [n for n in hist["names"] if n.endswith("_loss") or n.startswith("D_")] or hist["names"][:2]
    for k, n in enumerate(hist["names"]):
        if n not in shown:
            continue
        ax.plot(it, vals[:, k], label=n, linewidth=0.8)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    if np.all(vals[np.isfinite(vals)] > 0):
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
