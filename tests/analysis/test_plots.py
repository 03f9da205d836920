"""Tests for regtune.analysis.plots."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


def _effects_figure(ranges: dict[str, tuple[float, float]], seed: int = 0):  # noqa: ANN202
    from regtune.analysis import plots

    rng = np.random.default_rng(seed)
    n = 10
    trials = pd.DataFrame({"number": range(n), "state": "COMPLETE", "value": rng.uniform(0.8, 0.95, n),
                           "baseline": [True] + [False] * (n - 1)})
    for key, (low, high) in ranges.items():
        trials[key] = 10 ** rng.uniform(np.log10(low), np.log10(high), n)
    trials.loc[0, list(ranges)] = 0.0
    plt = plots._pyplot()
    with plt.style.context("ggplot"):
        return plt, plots._effects(plt, trials, list(ranges))


@pytest.mark.parametrize(
    "ranges",
    [{"l1": (1e-7, 1e-3), "elastic_net": (1e-6, 1e-3)}, {"l1": (1e-8, 1.6e-8), "elastic_net": (2.1e-5, 8.7e-5)},
     {"l1": (1e-8, 1e-7), "elastic_net": (10**-7.75, 10**-6.35)}, {"l1": (1e-2, 2.5e-1), "elastic_net": (1e-7, 0.9)}],
    ids=["search-space-ranges", "within-a-decade", "one-decade", "one-to-eight-decades"],
)
def test_effects_plot_log_axis_labels_never_overlap(ranges: dict[str, tuple[float, float]]) -> None:
    """The ``l1`` and ``elastic_net`` panels labelled minor ticks (2x10^-2, 3x10^-2 ...) on top of
    each other; the rendered labels now stay few and apart."""
    from regtune.analysis.plots import MAX_LOG_TICKS

    plt, fig = _effects_figure(ranges)
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        for ax in (a for a in fig.axes if a.get_visible()):
            low, high = sorted(ax.get_xlim())
            labels = [label for minor in (False, True)
                      for label, tick in zip(ax.get_xticklabels(minor=minor), ax.get_xticks(minor=minor), strict=True)
                      if label.get_visible() and label.get_text() and low <= tick <= high]
            boxes = sorted((label.get_window_extent(renderer) for label in labels), key=lambda box: box.x0)
            assert 1 <= len(boxes) <= MAX_LOG_TICKS + 1, [label.get_text() for label in labels]
            for left, right in zip(boxes, boxes[1:], strict=False):
                assert left.x1 < right.x0, f"{ax.get_xlabel()}: {[label.get_text() for label in labels]} overlap"
    finally:
        plt.close(fig)
