"""Soak: mixed traffic for ``--minutes`` against a real ``ragctl serve``; is the server's memory bounded?

Traffic (asyncio + httpx, 127.0.0.1 only), all at once:

- ``--query-clients`` clients run retrieval-only hybrid queries with ``--think-s`` pauses;
- one churn client uploads a unique document every ``--upload-every-s``, waits for it to be indexed and
  deletes the oldest once more than ``--live-docs`` of its own are alive (the collection stays the same size);
- one conversation client opens a conversation, sends three turns (follow-ups), reads it back and deletes it;
- with an LLM (default: the embedded SmolLM2, ``--max-tokens`` 32) one generating client cycles through a
  plain answer, a streamed answer read to the end, and a stream it drops after the first token (the
  client-disconnect path), pausing ``--generate-every-s`` between them.

The server's RSS (``/proc/<pid>/status`` VmRSS), threads and open file descriptors are read at start, after
the warm-up (``--warmup-s`` of the same traffic: models loaded, caches and pools filled) and every minute.
Memory counts as bounded when the end RSS is within ``--tolerance`` (15%) of the post-warm-up RSS; the
least-squares slope over the measured minutes is printed too, since a slow leak can hide inside 15%.
Rate limits are raised for the run (RAG_RATE_LIMIT_QUERY / RAG_RATE_LIMIT_UPLOAD = 1000000/minute).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from bench.common import Report, heading, load_average, print_table, summary_ms
from bench.serving import (
    UNLIMITED,
    Server,
    add_server_env,
    clapnq,
    create_collection,
    ms,
    passage_file,
    proc_counts,
    serve,
    server_env,
    upload_files,
    wait_indexed,
)

COLLECTION = "soak"


@dataclass
class Traffic:
    done: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latencies_ms: dict[str, list[float]] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)

    def ok(self, kind: str, started: float) -> None:
        self.done[kind] += 1
        self.latencies_ms.setdefault(kind, []).append((time.perf_counter() - started) * 1000)

    def failed(self, kind: str, what: str) -> None:
        self.errors[f"{kind}: {what}"] += 1
        if len(self.error_samples) < 10:
            self.error_samples.append(f"{kind}: {what}")


async def call(traffic: Traffic, kind: str, request: Any, expect: int) -> httpx.Response | None:
    started = time.perf_counter()
    try:
        response = await request
    except httpx.HTTPError as error:
        traffic.failed(kind, type(error).__name__)
        return None
    if response.status_code != expect:
        traffic.failed(kind, f"HTTP {response.status_code} {response.text[:120]}")
        return None
    traffic.ok(kind, started)
    return response


async def query_client(client: httpx.AsyncClient, questions: list[str], stop: float, think: float, t: Traffic) -> None:
    rng = random.Random()
    while time.monotonic() < stop:
        body = {"query": rng.choice(questions), "generate": False, "top_k": 5}
        await call(t, "query", client.post(f"/v1/collections/{COLLECTION}/query", json=body), 200)
        await asyncio.sleep(rng.uniform(0.5 * think, 1.5 * think))


async def wait_document(client: httpx.AsyncClient, document_id: str, stop: float) -> str:
    while time.monotonic() < stop + 120:
        response = await client.get(f"/v1/documents/{document_id}")
        if response.status_code == 200 and response.json()["status"] in ("indexed", "failed"):
            return response.json()["status"]
        await asyncio.sleep(0.5)
    return "timeout"


async def churn_client(
    client: httpx.AsyncClient, passages: list[dict[str, Any]], stop: float, every: float, live: int, t: Traffic
) -> None:
    """Unique bytes each time (a counter in the text), so every upload is a new document to index and delete."""
    mine: list[str] = []
    n = 0
    while time.monotonic() < stop:
        started = time.monotonic()
        passage = passages[n % len(passages)]
        name, data = passage_file(passage)
        data += f"\nsoak revision {n} {time.time_ns()}\n".encode()
        n += 1
        files = {"file": (f"soak-{n}-{name}", data, "text/plain")}
        response = await call(t, "upload", client.post(f"/v1/collections/{COLLECTION}/documents", files=files), 202)
        if response is not None:
            document_id = response.json()["id"]
            status = await wait_document(client, document_id, stop)
            if status != "indexed":
                t.failed("indexing", status)
            mine.append(document_id)
        while len(mine) > live:
            await call(t, "delete", client.delete(f"/v1/documents/{mine.pop(0)}"), 204)
        await asyncio.sleep(max(0.0, every - (time.monotonic() - started)))


FOLLOW_UPS = ("Can you say more about that?", "Why is that?", "And when did it happen?")


async def conversation_client(
    client: httpx.AsyncClient, questions: list[str], stop: float, think: float, generate: bool, t: Traffic
) -> None:
    rng = random.Random()
    while time.monotonic() < stop:
        response = await call(t, "conversation", client.post(f"/v1/collections/{COLLECTION}/conversations"), 201)
        if response is None:
            await asyncio.sleep(think)
            continue
        conversation = response.json()["id"]
        for message in (rng.choice(questions), *rng.sample(FOLLOW_UPS, 2)):
            body = {"message": message, "generate": generate, "top_k": 3}
            await call(t, "turn", client.post(f"/v1/conversations/{conversation}/messages", json=body), 200)
            await asyncio.sleep(rng.uniform(0.5 * think, 1.5 * think))
        await call(t, "conversation", client.get(f"/v1/conversations/{conversation}"), 200)
        await call(t, "conversation", client.delete(f"/v1/conversations/{conversation}"), 204)


async def read_stream(client: httpx.AsyncClient, body: dict[str, Any], drop_after_first: bool, t: Traffic) -> None:
    kind = "stream dropped" if drop_after_first else "stream"
    started = time.perf_counter()
    try:
        async with client.stream("POST", f"/v1/collections/{COLLECTION}/query", json=body) as response:
            if response.status_code != 200:
                t.failed(kind, f"HTTP {response.status_code}")
                return
            event = ""
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                if event == "token" and drop_after_first:
                    break
                if event == "error" and line.startswith("data:"):
                    t.failed(kind, json.loads(line[5:]).get("detail", "error event")[:120])
                    return
    except httpx.HTTPError as error:
        t.failed(kind, type(error).__name__)
        return
    t.ok(kind, started)


async def generating_client(
    client: httpx.AsyncClient, questions: list[str], stop: float, every: float, t: Traffic
) -> None:
    rng = random.Random()
    n = 0
    while time.monotonic() < stop:
        body = {"query": rng.choice(questions), "generate": True, "top_k": 3, "cache": False}
        if n % 3 == 0:
            await call(t, "generate", client.post(f"/v1/collections/{COLLECTION}/query", json=body), 200)
        else:
            await read_stream(client, {**body, "stream": True}, drop_after_first=n % 3 == 2, t=t)
        n += 1
        await asyncio.sleep(every)


@dataclass
class Sample:
    label: str
    at_s: float
    rss_mb: float
    threads: int
    fds: int
    load: str
    done: int
    errors: int


def sample(server: Server, label: str, started: float, traffic: Traffic) -> Sample:
    counts = proc_counts(server.pid)
    return Sample(
        label,
        time.monotonic() - started,
        server.rss_mb(),
        counts["threads"],
        counts["fds"],
        load_average(),
        sum(traffic.done.values()),
        sum(traffic.errors.values()),
    )


async def run(
    server: Server, args: argparse.Namespace, passages: list[dict[str, Any]], questions: list[str]
) -> tuple[list[Sample], Traffic]:
    traffic = Traffic()
    samples: list[Sample] = []
    begun = time.monotonic()
    samples.append(sample(server, "start (corpus indexed, no traffic yet)", begun, traffic))
    stop = begun + args.warmup_s + args.minutes * 60
    async with server.async_client(timeout=120, connections=args.query_clients + 10) as client:
        clients = [query_client(client, questions, stop, args.think_s, traffic) for _ in range(args.query_clients)]
        clients.append(churn_client(client, passages, stop, args.upload_every_s, args.live_docs, traffic))
        clients.append(conversation_client(client, questions, stop, args.think_s, args.llm != "none", traffic))
        if args.llm != "none":
            clients.append(generating_client(client, questions, stop, args.generate_every_s, traffic))
        tasks = [asyncio.create_task(c) for c in clients]
        await asyncio.sleep(args.warmup_s)
        samples.append(sample(server, "after warm-up", begun, traffic))
        for minute in range(1, args.minutes + 1):
            await asyncio.sleep(max(0.0, begun + args.warmup_s + minute * 60 - time.monotonic()))
            samples.append(sample(server, f"minute {minute}", begun, traffic))
        await asyncio.gather(*tasks)
    samples.append(sample(server, "end (all clients finished)", begun, traffic))
    return samples, traffic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=int, default=10, help="measured minutes after the warm-up")
    parser.add_argument("--warmup-s", type=float, default=60.0)
    parser.add_argument("--corpus", type=int, default=150, help="ClapNQ-dev passages indexed before the traffic")
    parser.add_argument("--query-clients", type=int, default=8)
    parser.add_argument("--think-s", type=float, default=0.5, help="mean pause of query and conversation clients")
    parser.add_argument("--upload-every-s", type=float, default=3.0)
    parser.add_argument("--live-docs", type=int, default=10, help="uploaded documents kept before deleting")
    parser.add_argument("--llm", choices=["llama_cpp", "none"], default="llama_cpp")
    parser.add_argument("--max-tokens", type=int, default=32, help="RAG_LLM_MAX_TOKENS of the server")
    parser.add_argument("--generate-every-s", type=float, default=5.0)
    parser.add_argument("--tolerance", type=float, default=0.15, help="allowed end RSS growth over post-warm-up")
    parser.add_argument("--seed", type=int, default=0)
    add_server_env(parser)
    args = parser.parse_args()
    run_report = Report("bench.soak")
    corpus, questions = clapnq()
    random.Random(args.seed).shuffle(corpus)
    initial, churn = corpus[: args.corpus], corpus[args.corpus :]
    asked = [q["question"] for q in questions]
    env = {"RAG_LLM_BACKEND": args.llm, "RAG_LLM_MAX_TOKENS": str(args.max_tokens), **server_env(args.server_env)}
    print(
        f"bench.soak: {args.minutes} min after {args.warmup_s:.0f} s warm-up; {args.query_clients} query clients, "
        f"churn every {args.upload_every_s} s, conversations, LLM {args.llm}; rate limits raised to {UNLIMITED}; "
        f"server env {server_env(args.server_env) or 'default'}"
    )
    with serve(env) as server:
        rss_boot = server.rss_mb()
        with server.client(timeout=120) as client:
            create_collection(client, COLLECTION)
            upload_files(client, COLLECTION, [passage_file(p) for p in initial])
            wait_indexed(client, COLLECTION)
        samples, traffic = asyncio.run(run(server, args, churn, asked))
        problems = server.log_problems()
        error_lines = server.error_lines()

    heading(f"Server RSS (right after start, before indexing: {rss_boot:.0f} MB)")
    print_table(
        ["when", "t s", "RSS MB", "threads", "fds", "requests", "errors", "load avg"],
        [[s.label, round(s.at_s), s.rss_mb, s.threads, s.fds, s.done, s.errors, s.load] for s in samples],
    )
    warm = samples[1]
    measured = [s for s in samples if s.label.startswith("minute")] or samples[1:]
    end = samples[-1]
    growth = (end.rss_mb - warm.rss_mb) / warm.rss_mb
    slope = float(np.polyfit([s.at_s / 60 for s in [warm, *measured]], [s.rss_mb for s in [warm, *measured]], 1)[0])
    bounded = growth <= args.tolerance
    print(
        f"\nRSS after warm-up {warm.rss_mb:.0f} MB, at end {end.rss_mb:.0f} MB ({growth:+.1%}); slope over the "
        f"measured minutes {slope:+.1f} MB/min; bounded (within {args.tolerance:.0%}): {'yes' if bounded else 'NO'}"
    )
    print("\nRequests (whole run, warm-up included)")
    rows = []
    for kind in sorted(set(traffic.done) | {k.split(":")[0] for k in traffic.errors}):
        lat = summary_ms(traffic.latencies_ms.get(kind, []))
        errors = sum(n for k, n in traffic.errors.items() if k.split(":")[0] == kind)
        rows.append([kind, traffic.done[kind], errors, lat["p50"], lat["p95"], ms(lat, "max")])
    print_table(["kind", "ok", "errors", "p50 ms", "p95 ms", "max ms"], rows)
    for line in traffic.error_samples:
        print("  error:", line)
    print(f"server log: {problems}")
    for line in error_lines:
        print("  log:", line)
    run_report.finish()


if __name__ == "__main__":
    main()
