"""How many of tantivy's best matches the tantivy keyword backend must re-score, per kind of index.

The default is ``RESCORE_FACTOR`` x the hits asked for (250 of 200).

tantivy ranks its matches at its own k1 1.2 / b 0.75; the backend re-scores its best ``depth`` at the index's
``bm25_params`` (``retrieval/tantivy_index.py``). A chunk that the platform's parameters put in the top
``--limit`` but tantivy's put below ``depth`` is lost. For each depth this bench reports, on ``--chunks`` real
SciFact text windows (``bench/keyword_engines.py``'s chunks) and their documents' rows (the keyword document
field, ``retrieval/document_field.py``), the share of the exact top 10 and top ``--limit`` (every match
re-scored) that the search at that depth returns, and the search latency p50 / p95 over SciFact queries.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench.common import Report, heading, print_table, progress, stopwatch, summary_ms
from bench.keyword_engines import window_records
from bench.retrieval_latency import scifact_queries
from retrieval.document_field import document_index, document_records
from retrieval.tantivy_index import RESCORE_FACTOR, TantivyIndex

INDEX = "bench_v1"
DEPTHS = (200, 250, 300, 400, 600)


def agreement(got: list[list[str]], exact: list[list[str]], top: int) -> float:
    found = sum(len(set(g[:top]) & set(e[:top])) for g, e in zip(got, exact, strict=True))
    return found / max(1, sum(len(e[:top]) for e in exact))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=20_000, help="text windows indexed (default 20,000)")
    parser.add_argument("--queries", type=int, default=300, help="SciFact queries searched (default 300)")
    parser.add_argument("--limit", type=int, default=200, help="hits asked for, as the retriever asks (default 200)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    report = Report("bench.tantivy_rescore_depth")
    report.start(f"tantivy re-score depth: {args.chunks:,} chunks, {args.queries} queries, top {args.limit}")
    records = window_records(args.chunks, args.seed)
    queries = scifact_queries(args.queries)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build = TantivyIndex(root)
        build.add(INDEX, records)
        build.add(document_index(INDEX), document_records(records))
        rows = []
        default = math.ceil(RESCORE_FACTOR * args.limit)
        for index in (INDEX, document_index(INDEX)):
            kind = "document" if index != INDEX else "chunk"
            progress(f"{kind} index: exact rankings (every match re-scored)")
            exact_index = TantivyIndex(root, rescore_depth=build.count(index))
            exact = [[h.id for h in exact_index.search(index, q, args.limit)] for q in queries]
            for depth in DEPTHS:
                engine = TantivyIndex(root, rescore_depth=depth)
                for query in queries[:20]:
                    engine.search(index, query, args.limit)
                got, times = [], []
                for query in queries:
                    with stopwatch() as elapsed:
                        hits = engine.search(index, query, args.limit)
                    times.append(elapsed[0] * 1000)
                    got.append([h.id for h in hits])
                ms = summary_ms(times)
                top10, top_limit = agreement(got, exact, 10), agreement(got, exact, args.limit)
                mark = " (default)" if depth == default else ""
                rows.append([kind, f"{depth}{mark}", f"{top10:.4f}", f"{top_limit:.4f}", ms["p50"], ms["p95"]])
                report.figures[f"{kind}_{depth}"] = {"top10": top10, "top_limit": top_limit, **ms}
    heading("Share of the exact ranking found, and search latency (ms), per re-score depth")
    print_table(["index", "depth", "top-10 agreement", f"top-{args.limit} agreement", "p50 ms", "p95 ms"], rows)
    report.finish()


if __name__ == "__main__":
    main()
