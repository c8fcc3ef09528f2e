"""The console's pure shaping: citation markers, highlighted spans, stage ranks, SVG charts, report tables."""

from __future__ import annotations

import re

from api.console import answer_view, reports, svg


def test_markers_become_links_only_where_a_source_card_exists() -> None:
    pieces = answer_view.answer_pieces("Tides rise [1]. Moons pull [2][7].", {1, 2})
    assert [(p.text, p.citation) for p in pieces] == [
        ("Tides rise ", None),
        ("[1]", 1),
        (". Moons pull ", None),
        ("[2]", 2),
        ("[7].", None),
    ]
    assert answer_view.answer_pieces("", {1}) == []


def test_cited_sentences_are_marked_by_their_offsets_clipped_and_merged() -> None:
    text = "One. Two is cited. Three too. Four."
    citation = {
        "text": text,
        "spans": [
            {"start": 19, "end": 29},
            {"start": 5, "end": 18},
            {"start": 17, "end": 20},
            {"start": 30, "end": 99},
        ],
    }
    segments = answer_view.highlighted(citation)
    assert "".join(s.text for s in segments) == text
    assert [s.text for s in segments if s.cited] == ["Two is cited. Three too.", "Four."]
    only_quote = {"text": text, "start": 5, "end": 18, "spans": []}
    assert [s.text for s in answer_view.highlighted(only_quote) if s.cited] == ["Two is cited."]
    assert [s.cited for s in answer_view.highlighted({"text": text})] == [False]


def test_why_rows_give_each_final_hit_its_rank_in_every_stage() -> None:
    retrieval = {"vector": ["a", "b", "c"], "keyword": ["c", "d"], "fused": ["c", "a", "b", "d"], "reranked": []}
    citations = [{"chunk_id": "a", "number": 1, "filename": "x.pdf", "page": 2}]
    candidates = [{"chunk_id": "c", "filename": "y.txt", "page": None}]
    rows = answer_view.why_rows(retrieval, citations, candidates)
    assert [r.chunk_id for r in rows] == ["c", "a", "b", "d"]
    assert rows[0].ranks == {"vector": 3, "keyword": 1, "fused": 1, "reranked": None}
    assert (rows[1].number, rows[1].filename, rows[1].page) == (1, "x.pdf", 2)
    assert rows[0].filename == "y.txt" and rows[2].filename is None
    assert answer_view.stages_run(retrieval) == ["vector", "keyword", "fused"]
    assert answer_view.final_ids({"keyword": ["k"]}) == ["k"]


def test_bar_chart_scales_to_the_largest_value_and_escapes_labels() -> None:
    chart = str(svg.bar_chart("nDCG", ["<hybrid>", "vector"], [0.8, 0.4]))
    assert chart.startswith("<svg") and "&lt;hybrid&gt;" in chart and "<hybrid>" not in chart
    widths = [float(w) for w in re.findall(r'class="chart-bar" x="\d+" y="\d+" width="([\d.]+)"', chart)]
    assert widths[0] == 2 * widths[1] > 0
    assert "<title>nDCG</title>" in chart and "vector: 0.400" in chart


def test_histogram_bins_cover_every_value_once() -> None:
    values = [1.0, 2.0, 2.5, 9.0, 10.0, float("nan")]
    bins = svg.histogram_bins(values, 3)
    assert sum(n for _, _, n in bins) == 5
    assert bins[0][0] == 1.0 and bins[-1][1] == 10.0
    assert [n for _, _, n in bins] == [3, 0, 2]
    assert svg.histogram_bins([5.0, 5.0], 4)[0][2] == 2
    assert "no values" in str(svg.histogram("Latency", []))


def test_report_view_reads_modes_stages_and_answer_modes() -> None:
    report = {
        "mode": "hybrid",
        "modes": {
            "hybrid": {"metrics": {"ndcg@10": 0.7, "latency_ms_p50": 12.0, "latency_ms_p95": 20.0}, "stages": {}},
            "vector": {"metrics": {"ndcg@10": 0.6, "latency_ms_p50": 8.0}, "stages": {"vector": {"ndcg@10": 0.6}}},
        },
        "answer_modes": {"extractive": {"metrics": {"groundedness": 1.0}}},
    }
    view = reports.report_view("r.json", report)
    assert [label for label, _ in view.rows] == ["hybrid", "vector", "vector / vector"]
    assert view.ranking_columns == ["ndcg@10"] and view.latency_columns == ["latency_ms_p50", "latency_ms_p95"]
    assert view.answer_rows == [("groundedness", [1.0])]
    assert len(view.charts) == 3 and "nDCG@10 per retrieval mode" in str(view.charts[0])
    single = reports.report_view("s.json", {"mode": "keyword", "metrics": {"ndcg@10": 0.5}, "stages": {}})
    assert [label for label, _ in single.rows] == ["keyword"] and len(single.charts) == 1
