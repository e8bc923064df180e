"""The weekly email's chart: a small PNG drawn on the server (matplotlib, Agg backend).

No pyplot (global state, not thread-safe): one ``Figure`` with an explicit Agg canvas per
chart. The fonts (DejaVu Sans, shipped with matplotlib) are rasterized into the image, so
the email needs no external font or image.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # before anything imports pyplot: no display, no GUI toolkit

from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image  # noqa: E402  (matplotlib's own dependency)

# 560 x 220 px: fits a 600 px email column; about 10-15 KB as a PNG.
WIDTH_IN, HEIGHT_IN, DPI = 5.6, 2.2, 100
BAR_COLOR = "#3b6ea8"
BASELINE_COLOR = "#c0504d"
TEXT_COLOR = "#333333"
GRID_COLOR = "#dddddd"
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def weekly_chart_png(
    *,
    week_start: dt.date,
    tst_min: Sequence[float | None],
    scores: Sequence[float | None],
    baseline_tst_min: float | None,
) -> bytes:
    """Bars of the week's nightly sleep (hours, Monday..Sunday wake-up dates) with each
    night's score above its bar and the 4-week baseline as a dashed line.

    ``tst_min`` and ``scores`` hold 7 values each (None or NaN: no night that day);
    ``baseline_tst_min`` is the previous 4 weeks' mean sleep in minutes (None: no baseline).
    """
    if len(tst_min) != 7 or len(scores) != 7:
        raise ValueError("one value per weekday expected")
    hours = [_hours(v) for v in tst_min]
    figure = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_axes((0.08, 0.14, 0.9, 0.72))
    labels = [
        f"{WEEKDAYS[i]} {(week_start + dt.timedelta(days=i)).day}" for i in range(7)
    ]
    axes.bar(range(7), [h or 0.0 for h in hours], color=BAR_COLOR, width=0.6)
    top = max([h for h in hours if h] + [_hours(baseline_tst_min) or 0.0, 8.0]) * 1.22
    for i, (h, score) in enumerate(zip(hours, scores, strict=True)):
        if h is None:
            axes.text(i, 0.3, "no data", ha="center", va="bottom", fontsize=7, color="#888888")
        elif _number(score) is not None:
            axes.text(i, h + top * 0.02, f"{_number(score):.0f}", ha="center", va="bottom", fontsize=8,
                      color=TEXT_COLOR)
    baseline = _hours(baseline_tst_min)
    if baseline is not None:
        axes.axhline(baseline, color=BASELINE_COLOR, linestyle="--", linewidth=1.2)
        axes.text(6.45, baseline, "4-week\naverage", ha="left", va="center", fontsize=7, color=BASELINE_COLOR)
    axes.set_xticks(range(7), labels, fontsize=8, color=TEXT_COLOR)
    axes.set_xlim(-0.5, 7.3 if baseline is not None else 6.5)
    axes.set_ylim(0, top)
    axes.set_ylabel("hours asleep", fontsize=8, color=TEXT_COLOR)
    axes.tick_params(axis="y", labelsize=8, colors=TEXT_COLOR)
    axes.grid(axis="y", color=GRID_COLOR, linewidth=0.6)
    axes.set_axisbelow(True)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    figure.text(0.08, 0.92, "Sleep by wake-up day (score above the bar)", fontsize=9, color=TEXT_COLOR)
    canvas = figure.canvas
    canvas.draw()
    # A few flat colours: a 64-colour palette PNG is about a third of the RGBA one.
    image = Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
    buffer = io.BytesIO()
    image.convert("RGB").quantize(colors=64).save(buffer, format="PNG")
    return buffer.getvalue()


def _number(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if value != value else value  # NaN -> None


def _hours(minutes) -> float | None:
    value = _number(minutes)
    return None if value is None else value / 60.0
