"""Server-rendered SVG line charts: a metric over time against its baseline and its warn and
critical lines, breaches marked. No script, no external file."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape

WIDTH, HEIGHT, PAD = 640, 220, 40


def line_chart(
    title: str,
    points: Sequence[tuple[datetime, float, str]],
    lines: Sequence[tuple[str, float, str]],
) -> str:
    """``points`` are (time, value, level) with level "ok", "warn" or "critical"; ``lines`` are
    (label, value, colour) drawn across (the baseline, and each threshold on both sides)."""
    if not points:
        return f'<p class="help">{escape(title)}: no observations yet.</p>'
    values = [v for _, v, _ in points] + [v for _, v, _ in lines]
    low, high = min(values), max(values)
    span = (high - low) or abs(high) or 1.0
    low, high = low - span * 0.05, high + span * 0.05
    start, end = points[0][0].timestamp(), points[-1][0].timestamp()
    width = (end - start) or 1.0

    def x(moment: datetime) -> float:
        return PAD + (moment.timestamp() - start) / width * (WIDTH - 2 * PAD)

    def y(value: float) -> float:
        return HEIGHT - PAD - (value - low) / (high - low) * (HEIGHT - 2 * PAD)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" aria-label="{escape(title)}">',
        f'<text x="{PAD}" y="16" font-size="13" font-weight="bold">{escape(title)}</text>',
    ]
    for label, value, colour in lines:
        parts.append(
            f'<line x1="{PAD}" x2="{WIDTH - PAD}" y1="{y(value):.1f}" y2="{y(value):.1f}" stroke="{colour}" '
            f'stroke-dasharray="4 3"><title>{escape(label)}: {value:.4g}</title></line>'
        )
        parts.append(
            f'<text x="{WIDTH - PAD + 2}" y="{y(value) + 4:.1f}" font-size="10" fill="{colour}">{escape(label)}</text>'
        )
    path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v, _ in points)
    parts.append(f'<polyline fill="none" stroke="#264b5d" stroke-width="2" points="{path}"/>')
    colours = {"ok": "#264b5d", "warn": "#e0a800", "critical": "#ba2121"}
    for moment, value, level in points:
        radius = 3 if level == "ok" else 5
        parts.append(
            f'<circle cx="{x(moment):.1f}" cy="{y(value):.1f}" r="{radius}" fill="{colours[level]}" '
            f'class="point-{level}"><title>{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC: {value:.4g} ({level})</title></circle>'
        )
    parts.append(
        f'<text x="{PAD}" y="{HEIGHT - 12}" font-size="10">{points[0][0]:%Y-%m-%d}</text>'
        f'<text x="{WIDTH - PAD}" y="{HEIGHT - 12}" font-size="10" text-anchor="end">{points[-1][0]:%Y-%m-%d}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)
