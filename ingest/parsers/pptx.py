"""PowerPoint (PPTX) via python-pptx: one page per slide (the slide number is the page).

Each slide gives its title (the section heading), the text of its shapes in the order they sit in the
slide (groups included), its tables row by row with the header repeated, its charts as tables (title, then a
record per category with each series' value: the numbers a chart shows are text a question can ask about),
and its speaker notes, which often hold what the presenter says and the slide does not. Pictures, media,
macros and embedded objects are not read.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator

from pptx import Presentation
from pptx.chart.chart import Chart
from pptx.shapes.base import BaseShape
from pptx.shapes.group import GroupShape
from pptx.slide import Slide

from core.errors import DocumentUnreadable
from ingest.parsers.base import ParsedDocument, ParseOptions, Section, require_text, tidy
from ingest.parsers.office_zip import check_office_zip
from ingest.parsers.rows import cell_text, render_table

WHAT = "PowerPoint presentation"
NOTES_LABEL = "Speaker notes:"
CHART_LABEL = "Chart"


def parse(data: bytes, options: ParseOptions | None = None) -> ParsedDocument:
    options = options or ParseOptions()
    check_office_zip(data, WHAT, options)
    try:
        presentation = Presentation(io.BytesIO(data))
        slides = list(presentation.slides)
    except MemoryError:  # the sandbox's memory limit: let it report as such
        raise
    except Exception as exc:  # python-pptx raises KeyError/ValueError on a package that is not a plain PPTX
        raise DocumentUnreadable(
            f"This {WHAT} cannot be read ({type(exc).__name__}); save it as a .pptx and upload it again."
        ) from exc
    if len(slides) > options.max_pages:
        raise DocumentUnreadable(
            f"This {WHAT} has {len(slides)} slides, over the limit of {options.max_pages} (RAG_MAX_PDF_PAGES); "
            "split it into smaller files."
        )
    sections: list[Section] = []
    for number, slide in enumerate(slides, start=1):
        sections.extend(_slide_sections(slide, number))
    title = (presentation.core_properties.title or "").strip()
    if not title and sections:
        title = sections[0].heading or ""
    return ParsedDocument(sections=require_text(sections, f"The {WHAT}"), page_count=len(slides), title=title or None)


def _slide_sections(slide: Slide, number: int) -> Iterator[Section]:
    title_shape = slide.shapes.title
    title = (
        " ".join(title_shape.text_frame.text.split()) if title_shape is not None and title_shape.has_text_frame else ""
    )
    heading = title or None
    body: list[str] = []
    emitted = False
    for shape in _shapes(slide.shapes):
        if title_shape is not None and shape.shape_id == title_shape.shape_id:
            continue
        if getattr(shape, "has_table", False) and shape.has_table:
            if body:
                yield Section(text="\n\n".join(body), page=number, heading=heading)
                body = []
            rows = ([cell_text(cell.text) for cell in row.cells] for row in shape.table.rows)
            records = render_table(rows)
            if records:
                emitted = True
                yield Section(text="\n\n".join(records), page=number, heading=heading, keep_paragraphs=True)
        elif getattr(shape, "has_chart", False) and shape.has_chart:
            records = _chart_records(shape.chart)
            if records:
                emitted = True
                yield Section(text="\n\n".join(records), page=number, heading=heading, keep_paragraphs=True)
        elif shape.has_text_frame:
            text = tidy(shape.text_frame.text)
            if text:
                body.append(text)
    if not body and not emitted and title:
        body.append(title)  # a title-only slide (a section divider) is still findable by its title
    if slide.has_notes_slide:
        notes_frame = slide.notes_slide.notes_text_frame
        notes = tidy(notes_frame.text) if notes_frame is not None else ""
        if notes:
            body.append(f"{NOTES_LABEL}\n{notes}")
    if body:
        yield Section(text="\n\n".join(body), page=number, heading=heading)


def _chart_records(chart: Chart) -> list[str]:
    """The chart's title, then one "category: ..., <series>: value" record per category.

    A chart python-pptx cannot read (damaged XML, or a chart type it does not model) gives no records: the
    rest of the slide still counts.
    """
    try:
        title = tidy(chart.chart_title.text_frame.text) if chart.has_title else ""
        plots = list(chart.plots)
        categories = [cell_text(label) for label in plots[0].categories] if plots else []
        series = [(cell_text(one.name), list(one.values)) for plot in plots for one in plot.series]
    except (KeyError, ValueError, AttributeError, IndexError, TypeError, NotImplementedError):
        return []  # NotImplementedError: a chart type python-pptx does not model
    header = ["category" if categories else "point", *(name or f"series {i + 1}" for i, (name, _) in enumerate(series))]
    points = max([len(categories), *(len(values) for _, values in series)], default=0)
    rows = [header] + [
        [
            categories[i] if i < len(categories) else str(i + 1),
            *(cell_text(values[i]) if i < len(values) else "" for _, values in series),
        ]
        for i in range(points)
    ]
    records = render_table(rows) if series else []
    label = f"{CHART_LABEL}: {title}" if title else CHART_LABEL
    return [label, *records] if records or title else []


def _shapes(shapes: Iterable[BaseShape]) -> Iterator[BaseShape]:
    for shape in shapes:
        if isinstance(shape, GroupShape):
            yield from _shapes(shape.shapes)
        else:
            yield shape
