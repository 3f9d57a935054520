"""The results page's chart of opens and clicks over time, drawn on the
server as SVG with pygal from a ``results.Timeline``.

Rules:

- **No script in the SVG.** pygal puts a ``<script>`` with its
  configuration in every chart (for its optional tooltips); it is removed
  from the tree before the SVG is written, and no external script is
  referenced (``js=[]``). The page shows the SVG as an ``<img>`` (where an
  SVG can never run anything) and serves it with a policy that allows no
  script either (``app.web.results``).
- **Readable without the picture.** The page gives the same numbers as a
  table; the SVG has a ``<title>`` (pygal's) and the image an ``alt`` text.
- Colours meet WCAG contrast on white and stay apart for the common
  colour-vision deficiencies (blue and amber); the legend names them.
"""

from __future__ import annotations

from datetime import timedelta
from xml.etree import ElementTree
from zoneinfo import ZoneInfo

import pygal
from pygal.style import Style

from app.services.results import Timeline

# (width, height, x labels shown): a wide chart, and a narrow one for
# small screens (the page picks it with <picture>), so that its text stays
# readable instead of being scaled down.
UTC_ZONE = ZoneInfo("UTC")
SIZES = {"wide": (800, 320, 12), "narrow": (360, 320, 4)}
OPENS_COLOUR = "#1d4ed8"  # blue 700: 6.7:1 on white
CLICKS_COLOUR = "#b45309"  # amber 700: 5.0:1 on white
_STYLE = Style(
    background="#ffffff",
    plot_background="#ffffff",
    foreground="#1f2937",
    foreground_strong="#111827",
    foreground_subtle="#6b7280",
    colors=(OPENS_COLOUR, CLICKS_COLOUR),
    font_family="system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
    label_font_size=12,
    major_label_font_size=12,
    legend_font_size=14,
    title_font_size=16,
)


def bucket_label(timeline: Timeline, index: int, zone: ZoneInfo = UTC_ZONE) -> str:
    """A bucket's start in ``zone`` as the axis shows it: the date for
    day-wide buckets, the time otherwise, with the date at the first and at
    each new day. (Buckets are cut in UTC: a day-wide bucket starts at UTC
    midnight, shown as its local date and time when the zone is not UTC.)"""
    start = timeline.buckets[index].start.astimezone(zone)
    whole_days = start.utcoffset() == timedelta(0)
    if timeline.width >= timedelta(days=1):
        return start.strftime("%Y-%m-%d" if whole_days else "%Y-%m-%d %H:%M")
    previous = timeline.buckets[index - 1].start.astimezone(zone) if index else None
    new_day = previous is None or previous.date() != start.date()
    return start.strftime("%m-%d %H:%M" if new_day else "%H:%M")


def timeline_svg(
    timeline: Timeline, title: str, size: str = "wide", zone: ZoneInfo = UTC_ZONE
) -> bytes:
    """The chart as a standalone SVG document (UTF-8), without any script:
    opens and clicks side by side per bucket, labelled in ``zone``. ``size``
    is a key of ``SIZES``."""
    width, height, labels = SIZES[size]
    chart = pygal.Bar(
        style=_STYLE,
        js=[],
        width=width,
        height=height,
        title=title,
        x_title=f"Time ({zone.key}), per {width_text(timeline.width)}",
        y_title="Events",
        x_label_rotation=30,
        show_minor_x_labels=False,
        x_labels_major_count=labels,
        truncate_label=-1,
        min_scale=1,
        max_scale=6,
        legend_at_bottom=True,
        legend_at_bottom_columns=2,
        no_data_text="No opens or clicks yet",
        print_values=False,
        explicit_size=False,
    )
    chart.x_labels = [bucket_label(timeline, index, zone) for index in range(len(timeline.buckets))]
    chart.add("Opens", [bucket.opens for bucket in timeline.buckets])
    chart.add("Clicks", [bucket.clicks for bucket in timeline.buckets])
    tree = chart.render_tree()  # pygal's elements carry no namespace prefix
    for defs in tree.iter("defs"):
        for script in list(defs.iter("script")):
            defs.remove(script)
    svg: bytes = ElementTree.tostring(tree, encoding="utf-8", xml_declaration=True)
    return svg


def width_text(width: timedelta) -> str:
    minutes = int(width.total_seconds() // 60)
    if minutes % 1440 == 0:
        days = minutes // 1440
        return "day" if days == 1 else f"{days} days"
    if minutes % 60 == 0:
        hours = minutes // 60
        return "hour" if hours == 1 else f"{hours} hours"
    return "minute" if minutes == 1 else f"{minutes} minutes"
