"""Load: N concurrent clients run retrieval-only queries while documents upload, then nothing is lost.

Against a real ``ragctl serve`` on 127.0.0.1 (embedded defaults: Qdrant Edge, bm25s, in-process worker, no
LLM). A ClapNQ-dev corpus is indexed first; during the timed phase ``--clients`` asyncio clients query in a
closed loop (``--think-s`` between queries) while further passages are uploaded at an even rate (an open
workload: a slow upload does not delay the next), some re-sent after their answer and some as two identical
uploads at the same moment (the dedupe race). Afterwards, once the
worker has drained, every uploaded document must be listed exactly once, ``indexed``, with no two rows of the
same sha256, and a query filtered to each document must find exactly its chunk count in the vector index and
no more than that (without repeats) in the keyword index.

The per-key rate limits are raised for the run (RAG_RATE_LIMIT_QUERY / RAG_RATE_LIMIT_UPLOAD = 1000000/minute):
the defaults (120 queries, 60 uploads a minute) would answer most of this traffic with 429.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.common import Report, heading, load_average, print_table, summary_ms
from bench.serving import (
    UNLIMITED,
    Server,
    add_server_env,
    all_documents,
    clapnq,
    create_collection,
    ms,
    passage_file,
    serve,
    server_env,
    upload_files,
    wait_indexed,
)

COLLECTION = "load"


@dataclass
class Tally:
    latencies_ms: list[float] = field(default_factory=list)
    server_ms: list[float] = field(default_factory=list)
    stages_ms: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    uploads_ms: list[float] = field(default_factory=list)
    upload_errors: Counter[str] = field(default_factory=Counter)
    uploaded: dict[str, str] = field(default_factory=dict)
    """file name -> document id of every accepted upload (first answer)."""
    duplicates_checked: int = 0
    duplicate_mismatches: list[str] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)

    def error(self, counter: Counter[str], kind: str, detail: str) -> None:
        counter[kind] += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(f"{kind}: {detail[:300]}")


async def query_client(
    client: httpx.AsyncClient,
    questions: list[str],
    deadline: float,
    think_s: float,
    top_k: int,
    tally: Tally,
    start_after_s: float = 0.0,
) -> None:
    rng = random.Random()
    await asyncio.sleep(start_after_s)
    while time.monotonic() < deadline:
        body = {"query": rng.choice(questions), "generate": False, "top_k": top_k}
        started = time.perf_counter()
        try:
            response = await client.post(f"/v1/collections/{COLLECTION}/query", json=body)
        except httpx.HTTPError as error:
            tally.error(tally.errors, type(error).__name__, f"query: {error!r}")
            continue
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            tally.error(tally.errors, f"HTTP {response.status_code}", f"query: {response.text}")
            continue
        tally.latencies_ms.append(elapsed)
        timings = response.json()["timings_ms"]
        tally.server_ms.append(float(timings.get("total", 0.0)))
        for stage, took in timings.items():
            tally.stages_ms.setdefault(stage, []).append(float(took))
        if think_s:
            await asyncio.sleep(rng.uniform(0.5 * think_s, 1.5 * think_s))


async def upload_one(client: httpx.AsyncClient, name: str, data: bytes, tally: Tally) -> dict[str, Any] | None:
    started = time.perf_counter()
    try:
        response = await client.post(
            f"/v1/collections/{COLLECTION}/documents", files={"file": (name, data, "text/plain")}
        )
    except httpx.HTTPError as error:
        tally.error(tally.upload_errors, type(error).__name__, f"upload {name}: {error!r}")
        return None
    tally.uploads_ms.append((time.perf_counter() - started) * 1000)
    if response.status_code != 202:
        tally.error(tally.upload_errors, f"HTTP {response.status_code}", f"upload {name}: {response.text}")
        return None
    return response.json()


def note_duplicate(tally: Tally, name: str, body: dict[str, Any] | None, first_id: str | None) -> None:
    if body is None or first_id is None:
        return
    tally.duplicates_checked += 1
    if body["id"] != first_id:
        tally.duplicate_mismatches.append(f"{name}: {body['id']} != {first_id}")


async def upload_file(client: httpx.AsyncClient, name: str, data: bytes, duplicate: str | None, tally: Tally) -> None:
    """One file; ``duplicate`` re-sends it ``"after"`` the first answer or ``"concurrent"`` with it."""
    if duplicate == "concurrent":
        first, second = await asyncio.gather(
            upload_one(client, name, data, tally), upload_one(client, name, data, tally)
        )
        if first is not None:
            tally.uploaded[name] = first["id"]
        note_duplicate(tally, name, second, first["id"] if first else None)
        return
    body = await upload_one(client, name, data, tally)
    if body is None:
        return
    tally.uploaded[name] = body["id"]
    if duplicate == "after":
        note_duplicate(tally, name, await upload_one(client, name, data, tally), body["id"])


async def uploader(
    client: httpx.AsyncClient, files: list[tuple[str, bytes]], deadline: float, duplicate_every: int, tally: Tally
) -> None:
    """Starts the uploads at an even rate over the phase, however slow each one is (an open workload);
    every ``duplicate_every``-th file is re-sent, alternately after its answer and at the same moment."""
    start = time.monotonic()
    interval = max(0.0, (deadline - start) / max(1, len(files)))
    running = []
    for n, (name, data) in enumerate(files, start=1):
        await asyncio.sleep(max(0.0, start + (n - 1) * interval - time.monotonic()))
        if time.monotonic() >= deadline:
            break
        duplicate = None
        if duplicate_every and n % duplicate_every == 0:
            duplicate = "concurrent" if (n // duplicate_every) % 2 == 0 else "after"
        running.append(asyncio.create_task(upload_file(client, name, data, duplicate, tally)))
    await asyncio.gather(*running)


async def run_load(
    server: Server, args: argparse.Namespace, questions: list[str], files: list[tuple[str, bytes]]
) -> Tally:
    tally = Tally()
    async with server.async_client(timeout=args.timeout, connections=args.clients + 10) as client:
        deadline = time.monotonic() + args.duration
        ramp_s = args.think_s if args.ramp_s is None else args.ramp_s
        tasks = [
            query_client(client, questions, deadline, args.think_s, args.top_k, tally, n * ramp_s / args.clients)
            for n in range(args.clients)
        ]
        await asyncio.gather(uploader(client, files, deadline, args.duplicate_every, tally), *tasks)
    return tally


def sequential_queries(client: httpx.Client, questions: list[str], top_k: int) -> list[float]:
    """Service time with no queueing: what a query costs on this machine right now."""
    latencies = []
    for question in questions:
        started = time.perf_counter()
        response = client.post(
            f"/v1/collections/{COLLECTION}/query", json={"query": question, "generate": False, "top_k": top_k}
        )
        response.raise_for_status()
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def check_exactly_once(server: Server, tally: Tally, texts: dict[str, str], initial: int) -> list[list[Any]]:
    """Rows: check, expected, found, verdict."""
    with server.client(timeout=120) as client:
        drain_started = time.monotonic()
        counts = wait_indexed(client, COLLECTION)
        drain_s = time.monotonic() - drain_started
        documents, total = all_documents(client, COLLECTION)
        by_id = Counter(d["id"] for d in documents)
        by_sha = Counter(d["sha256"] for d in documents)
        expected_total = initial + len(tally.uploaded)
        uploaded_ids = set(tally.uploaded.values())
        listed = {d["id"]: d for d in documents}
        missing = [i for i in uploaded_ids if i not in listed]
        not_indexed = [i for i in uploaded_ids if i in listed and listed[i]["status"] != "indexed"]
        vector_bad: list[str] = []
        keyword_bad: list[str] = []
        for name, document_id in tally.uploaded.items():
            document = listed.get(document_id)
            if document is None:
                continue
            body = {
                "query": texts[name][:1500],
                "generate": False,
                "top_k": 100,
                "filters": {"document_ids": [document_id]},
            }
            retrieval = client.post(f"/v1/collections/{COLLECTION}/query", json=body).json()["retrieval"]
            vector, keyword = retrieval["vector"], retrieval["keyword"]
            if len(vector) != document["chunks"] or len(set(vector)) != len(vector):
                vector_bad.append(f"{document_id}: {len(vector)} vector hits, {document['chunks']} chunks")
            if len(keyword) > document["chunks"] or len(set(keyword)) != len(keyword):
                keyword_bad.append(f"{document_id}: {len(keyword)} keyword hits, {document['chunks']} chunks")
    for problem in (missing + not_indexed + vector_bad + keyword_bad + tally.duplicate_mismatches)[:10]:
        print("  problem:", problem)

    def verdict(ok: bool) -> str:
        return "ok" if ok else "FAIL"

    return [
        ["worker drained after the load phase (s)", "-", f"{drain_s:.1f}", "-"],
        ["documents listed (total)", expected_total, total, verdict(total == expected_total)],
        ["statuses", f"indexed={expected_total}", counts, verdict(counts["indexed"] == expected_total)],
        ["rows sharing a sha256", 0, sum(n - 1 for n in by_sha.values()), verdict(max(by_sha.values()) == 1)],
        ["ids listed more than once", 0, sum(n - 1 for n in by_id.values()), verdict(max(by_id.values()) == 1)],
        [
            "uploaded but missing / not indexed",
            0,
            f"{len(missing)} / {len(not_indexed)}",
            verdict(not missing and not not_indexed),
        ],
        [
            "duplicate uploads answered with the first id",
            tally.duplicates_checked,
            tally.duplicates_checked - len(tally.duplicate_mismatches),
            verdict(not tally.duplicate_mismatches),
        ],
        [
            "vector index: hits per document == chunks",
            len(tally.uploaded),
            len(tally.uploaded) - len(vector_bad),
            verdict(not vector_bad),
        ],
        [
            "keyword index: hits per document <= chunks, no repeats",
            len(tally.uploaded),
            len(tally.uploaded) - len(keyword_bad),
            verdict(not keyword_bad),
        ],
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50, help="concurrent query clients")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument(
        "--think-s",
        type=float,
        default=1.0,
        help="mean pause between a client's queries: 50 users who read an answer before the next question "
        "(0 = closed loop: every client always has a query in flight, a capacity test)",
    )
    parser.add_argument(
        "--ramp-s",
        type=float,
        default=None,
        help="clients start evenly spread over this many seconds (default: one think time), as locust's spawn "
        "rate does; 0 sends every client's first query at the same instant (a burst, not a steady load)",
    )
    parser.add_argument("--corpus", type=int, default=200, help="ClapNQ-dev passages indexed before the load")
    parser.add_argument("--uploads", type=int, default=100, help="further passages uploaded during the load")
    parser.add_argument("--duplicate-every", type=int, default=10, help="re-send every n-th upload (0 = never)")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--single-queries", type=int, default=50, help="one-client queries measured before the load")
    parser.add_argument("--timeout", type=float, default=30.0, help="client timeout per request (s)")
    parser.add_argument("--seed", type=int, default=0)
    add_server_env(parser)
    args = parser.parse_args()
    run_report = Report("bench.load_test")
    corpus, questions = clapnq()
    random.Random(args.seed).shuffle(corpus)
    initial = corpus[: args.corpus]
    later = corpus[args.corpus : args.corpus + args.uploads]
    if len(later) < args.uploads:
        raise SystemExit(f"ClapNQ-dev has {len(corpus)} passages: --corpus + --uploads must not exceed it")
    files = [passage_file(p) for p in later]
    texts = {name: data.decode() for name, data in files}
    asked = [q["question"] for q in questions]

    print(
        f"bench.load_test: {args.clients} clients x {args.duration:.0f} s, think {args.think_s} s, "
        f"ramp-up {args.think_s if args.ramp_s is None else args.ramp_s} s, "
        f"{len(initial)} passages indexed first, {len(files)} uploaded during the load; "
        f"rate limits raised to {UNLIMITED} per key; server env {server_env(args.server_env) or 'default'}"
    )
    with serve(server_env(args.server_env)) as server:
        with server.client(timeout=120) as client:
            create_collection(client, COLLECTION)
            upload_files(client, COLLECTION, [passage_file(p) for p in initial])
            wait_indexed(client, COLLECTION)
            for question in asked[:20]:  # warm-up: model, indexes, SQL
                client.post(f"/v1/collections/{COLLECTION}/query", json={"query": question, "generate": False})
            single_load = load_average()
            single = sequential_queries(client, asked[20 : 20 + args.single_queries], args.top_k)
        rss_before = server.rss_mb()
        load_start = load_average()
        started = time.monotonic()
        tally = asyncio.run(run_load(server, args, asked, files))
        elapsed = time.monotonic() - started
        load_end = load_average()
        rss_after = server.rss_mb()
        checks = check_exactly_once(server, tally, texts, len(initial))
        problems = server.log_problems()
        error_lines = server.error_lines()

    lat = summary_ms(tally.latencies_ms)
    srv = summary_ms(tally.server_ms)
    up = summary_ms(tally.uploads_ms)
    queries = len(tally.latencies_ms)
    errors = sum(tally.errors.values())
    one = summary_ms(single)
    heading(f"One client, one query at a time, before the load (load average {single_load})")
    print_table(
        ["what", "n", "per s", "p50 ms", "p95 ms", "p99 ms", "max ms"],
        [
            [
                "query, client-observed",
                one["n"],
                1000 / ms(one, "mean"),
                one["p50"],
                one["p95"],
                one["p99"],
                ms(one, "max"),
            ]
        ],
    )
    heading(f"Load phase ({elapsed:.1f} s; load average {load_start} at start, {load_end} at end)")
    print_table(
        ["what", "n", "per s", "p50 ms", "p95 ms", "p99 ms", "max ms", "errors"],
        [
            [
                "query, client-observed",
                queries,
                queries / elapsed,
                lat["p50"],
                lat["p95"],
                lat["p99"],
                ms(lat, "max"),
                errors,
            ],
            ["query, server timings_ms.total", srv["n"], "-", srv["p50"], srv["p95"], srv["p99"], ms(srv, "max"), "-"],
            [
                "upload (202 accepted)",
                up["n"],
                up["n"] / elapsed,
                up["p50"],
                up["p95"],
                up["p99"],
                ms(up, "max"),
                sum(tally.upload_errors.values()),
            ],
        ],
    )
    heading("Server-side stage timings under load (timings_ms of each answer)")
    print_table(
        ["stage", "p50 ms", "p95 ms", "max ms"],
        [[stage, *(ms(summary_ms(v), k) for k in ("p50", "p95", "max"))] for stage, v in tally.stages_ms.items()],
    )
    if tally.errors or tally.upload_errors:
        print("errors by kind:", dict(tally.errors), dict(tally.upload_errors))
        for sample in tally.error_samples:
            print("  error:", sample)
    target = lat["p95"] < 200 and errors == 0
    print(
        f"target (zero errors, p95 < 200 ms): {'met' if target else 'NOT met'}; "
        f"server RSS {rss_before:.0f} MB before, {rss_after:.0f} MB after; server log {problems}"
    )
    for line in error_lines:
        print("  server log:", line)
    heading("Exactly once, after the worker drained")
    print_table(["check", "expected", "found", "verdict"], checks)
    run_report.finish()


if __name__ == "__main__":
    main()
