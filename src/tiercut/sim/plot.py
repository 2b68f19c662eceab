"""Plots of simulation traces: each query's delay against time, partition arrivals marked."""

from __future__ import annotations

from pathlib import Path

from tiercut.errors import TiercutError
from tiercut.sim.results import SimResult

#: at most this many users get their own curve; the rest are summarised.
MAX_CURVES = 12


def plot_delays(result: SimResult, path: str | Path, title: str = "") -> Path:
    """Write a PNG/SVG of every user's query delay (end - start) against the query's start time.

    With more than :data:`MAX_CURVES` users the plot shows the mean delay
    per time bin over all users instead. Partition arrivals are ticks at the
    bottom.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    if path.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise TiercutError(f"plot file {path} must end in .png, .svg or .pdf")
    fig, ax = plt.subplots(figsize=(9, 4.5))
    users = list(result.users)
    if len(users) <= MAX_CURVES:
        for user in users:
            queries = result.user_queries(user)
            if queries:
                ax.plot([q.start_s for q in queries], [q.latency_s for q in queries], drawstyle="steps-post", label=user)
    else:
        queries = sorted(result.queries, key=lambda q: q.start_s)
        if queries:
            span = max(q.start_s for q in queries) or 1.0
            bins = 200
            sums = [0.0] * bins
            counts = [0] * bins
            for q in queries:
                k = min(bins - 1, int(q.start_s / span * bins))
                sums[k] += q.latency_s
                counts[k] += 1
            xs = [(k + 0.5) * span / bins for k in range(bins) if counts[k]]
            ys = [sums[k] / counts[k] for k in range(bins) if counts[k]]
            ax.plot(xs, ys, label=f"mean over {len(users)} users")
    arrivals = [a.arrives_s for a in result.arrivals]
    if arrivals:
        ax.plot(arrivals, [0.0] * len(arrivals), "|", color="black", markersize=10, label="partition arrivals")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("query delay (s)")
    ax.set_title(title or "query delay while partitions upload")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    except OSError as exc:
        raise TiercutError(f"cannot write plot {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
    return path


__all__ = ["MAX_CURVES", "plot_delays"]
