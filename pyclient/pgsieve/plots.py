"""PNG plots for people who would rather look than read: recall–latency curves and per-stage metric bars.

Shared by ``pgsieve eval --plot`` and the benchmark harness (bench/), so there is one way to draw a
recall–latency chart.  matplotlib is imported lazily with the non-interactive Agg backend (no display needed);
it comes with the ``eval`` extra (``pip install pgsieve[eval]``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

__all__ = ["Series", "pyplot", "save", "draw_recall_latency", "recall_latency", "stage_bars"]


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend; ImportError naming the extra when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError("plots need matplotlib: pip install 'pgsieve[eval]' (or matplotlib)") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig: Any, path: Union[str, Path]) -> Path:
    """Lay out, write (creating the folder) and close a figure; returns the path."""
    p = Path(path)
    fig.tight_layout()
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p)
    pyplot().close(fig)
    return p


@dataclass
class Series:
    """One line of a recall–latency chart: points (recall, latency), drawn in the given order."""

    label: str
    recall: Sequence[float]
    latency: Sequence[float]
    marker: str = "o"
    linestyle: str = "-"
    color: Optional[str] = None
    point_labels: Optional[Sequence[str]] = None  # small text beside each point (e.g. the swept knob's value)
    style: dict[str, Any] = field(default_factory=dict)  # further Axes.plot keywords

    def __post_init__(self) -> None:
        if len(self.recall) != len(self.latency):
            raise ValueError(f"series {self.label!r}: {len(self.recall)} recall values, "
                             f"{len(self.latency)} latencies")
        if self.point_labels is not None and len(self.point_labels) != len(self.recall):
            raise ValueError(f"series {self.label!r}: point_labels must have one label per point")


def draw_recall_latency(ax: Any, series: Sequence[Series], *, xlabel: str = "recall@10",
                        ylabel: str = "p50 latency, ms (log)", log_y: bool = True, title: Optional[str] = None,
                        legend_size: float = 8, legend_loc: str = "best") -> None:
    """Draw recall–latency series on one matplotlib Axes (for figures with several panels)."""
    for s in series:
        if not len(s.recall):
            continue
        kw: dict[str, Any] = {"marker": s.marker, "linestyle": s.linestyle, "linewidth": 1, "markersize": 4,
                              "label": s.label, **s.style}
        if s.color is not None:
            kw["color"] = s.color
        ax.plot(list(s.recall), list(s.latency), **kw)
        for text, x, y in zip(s.point_labels or (), s.recall, s.latency):
            ax.annotate(str(text), (x, y), textcoords="offset points", xytext=(3, 3), fontsize=6, alpha=0.7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if log_y:
        ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    if title:
        ax.set_title(title, fontsize=9)
    if any(len(s.recall) for s in series):
        ax.legend(fontsize=legend_size, loc=legend_loc)


def recall_latency(series: Sequence[Series], path: Union[str, Path], title: str, *,
                   notes: Sequence[tuple[str, float, float]] = (), size: tuple[float, float] = (7.5, 4.8),
                   **axes_kw: Any) -> Path:
    """One recall–latency chart (latency on a log axis) as a PNG.

    ``notes``: ``(text, recall, latency)`` arrows pointing at particular points (e.g. a default setting).
    ``axes_kw`` go to :func:`draw_recall_latency` (``xlabel``, ``ylabel``, ``log_y``).
    """
    if not any(len(s.recall) for s in series):
        raise ValueError("nothing to plot: every series is empty")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=size, dpi=110)
    draw_recall_latency(ax, series, **axes_kw)
    for text, x, y in notes:
        ax.annotate(text, (x, y), textcoords="offset points", xytext=(-70, 12), fontsize=8,
                    arrowprops={"arrowstyle": "->", "lw": 0.6})
    ax.set_title(title, fontsize=10)
    return save(fig, path)


def stage_bars(values: Mapping[str, Mapping[str, float]], path: Union[str, Path], title: str,
               metrics: Optional[Sequence[str]] = None) -> Path:
    """Grouped bars: one group per metric, one bar per stage (``values[stage][metric]``), values printed on top.

    This is ``pgsieve eval --per-stage --plot``: how much each gather stage alone scores, next to the fused
    pipeline.
    """
    stages = list(values)
    if not stages:
        raise ValueError("nothing to plot: no stages")
    metrics = list(metrics) if metrics is not None else list(dict.fromkeys(m for v in values.values() for m in v))
    if not metrics:
        raise ValueError("nothing to plot: no metrics")
    plt = pyplot()
    width = 0.8 / len(stages)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 + 0.5 * len(stages) * len(metrics)), 4.2), dpi=110)
    for i, stage in enumerate(stages):
        xs = [j - 0.4 + width * (i + 0.5) for j in range(len(metrics))]
        ys = [float(values[stage].get(m, 0.0)) for m in metrics]
        bars = ax.bar(xs, ys, width=width * 0.95, label=stage)
        for bar, y in zip(bars, ys):
            ax.annotate(f"{y:.3f}", (bar.get_x() + bar.get_width() / 2, y), textcoords="offset points",
                        xytext=(0, 2), ha="center", fontsize=7)
    ax.set_xticks(range(len(metrics)))
    ax.set_xticklabels(metrics)
    top = max([float(v.get(m, 0.0)) for v in values.values() for m in metrics] + [0.0])
    ax.set_ylim(0, max(0.05, top * 1.15))
    ax.set_ylabel("score")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left" if len(stages) > 3 else "best")
    ax.set_title(title, fontsize=10)
    return save(fig, path)
