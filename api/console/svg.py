"""Charts as inline SVG markup, drawn on the server (no script, no styles outside the stylesheet).

Pure functions of their numbers; every chart has a title and a text description for screen readers,
and the numbers themselves are printed next to the bars.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from markupsafe import Markup, escape

WIDTH = 560
BAR_HEIGHT = 22
GAP = 8
LABEL_WIDTH = 150
VALUE_WIDTH = 70


TITLE_HEIGHT = 26


def _svg(title: str, description: str, height: int, body: list[str]) -> Markup:
    """The title is drawn above the chart as well as named for screen readers."""
    total = height + TITLE_HEIGHT
    return Markup(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {total}" width="{WIDTH}" height="{total}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(title)}</title><desc>{escape(description)}</desc>"
        f'<text class="chart-title" x="8" y="18">{escape(title)}</text>'
        f'<g transform="translate(0 {TITLE_HEIGHT})">{"".join(body)}</g></svg>'
    )


def bar_chart(title: str, labels: Sequence[str], values: Sequence[float], fmt: str = "{:.3f}") -> Markup:
    """Horizontal bars, one per label, scaled to the largest value."""
    top = max((v for v in values if math.isfinite(v)), default=0.0) or 1.0
    span = WIDTH - LABEL_WIDTH - VALUE_WIDTH
    body = []
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = GAP + i * (BAR_HEIGHT + GAP)
        width = max(0.0, value) / top * span if math.isfinite(value) else 0.0
        body.append(
            f'<text class="chart-label" x="{LABEL_WIDTH - 8}" y="{y + BAR_HEIGHT * 0.7:.1f}" text-anchor="end">'
            f"{escape(label)}</text>"
            f'<rect class="chart-bar" x="{LABEL_WIDTH}" y="{y}" width="{width:.1f}" height="{BAR_HEIGHT}"/>'
            f'<text class="chart-value" x="{LABEL_WIDTH + width + 6:.1f}" y="{y + BAR_HEIGHT * 0.7:.1f}">'
            f"{escape(fmt.format(value))}</text>"
        )
    description = ", ".join(f"{label}: {fmt.format(v)}" for label, v in zip(labels, values, strict=True))
    return _svg(title, description, GAP + len(labels) * (BAR_HEIGHT + GAP), body)


def histogram_bins(values: Sequence[float], bins: int) -> list[tuple[float, float, int]]:
    """``bins`` equal-width bins from the smallest to the largest value: (low, high, count)."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return []
    low, high = min(finite), max(finite)
    width = (high - low) / bins or 1.0
    counts = [0] * bins
    for value in finite:
        counts[min(int((value - low) / width), bins - 1)] += 1
    return [(low + i * width, low + (i + 1) * width, n) for i, n in enumerate(counts)]


def histogram(title: str, values: Sequence[float], unit: str = "ms", bins: int = 12) -> Markup:
    """Vertical bars of counts per value range, with the range under every other bar."""
    rows = histogram_bins(values, bins)
    height, base, left = 200, 170, 36
    if not rows:
        return _svg(title, "no values", 40, ['<text class="chart-label" x="8" y="24">no values yet</text>'])
    top = max(n for _, _, n in rows)
    step = (WIDTH - left - 8) / len(rows)
    body = [f'<line class="chart-axis" x1="{left}" y1="{base}" x2="{WIDTH - 8}" y2="{base}"/>']
    for i, (low, high, count) in enumerate(rows):
        bar = count / top * (base - 20)
        x = left + i * step
        body.append(
            f'<rect class="chart-bar" x="{x + 2:.1f}" y="{base - bar:.1f}" width="{step - 4:.1f}" height="{bar:.1f}">'
            f"<title>{low:.0f}-{high:.0f} {escape(unit)}: {count}</title></rect>"
        )
        if count:
            body.append(
                f'<text class="chart-value" x="{x + step / 2:.1f}" y="{base - bar - 4:.1f}" text-anchor="middle">'
                f"{count}</text>"
            )
        if i % 2 == 0:
            body.append(
                f'<text class="chart-label" x="{x + step / 2:.1f}" y="{base + 16}" text-anchor="middle">'
                f"{low:.0f}</text>"
            )
    body.append(f'<text class="chart-label" x="{WIDTH - 8}" y="{base + 30}" text-anchor="end">{escape(unit)}</text>')
    description = "; ".join(f"{low:.0f}-{high:.0f} {unit}: {n}" for low, high, n in rows)
    return _svg(title, description, height + 4, body)
