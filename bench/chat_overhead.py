"""What the OpenAI-compatible endpoint costs over the native query endpoint, in the same run.

A real ``ragctl serve`` (embedded defaults, no LLM: the default extractive answer) indexes ClapNQ-dev passages
(the gold passages of ``--questions`` answerable questions plus fillers up to ``--passages``). Then each
question is asked four ways over HTTP with httpx, interleaved so all four see the same load drift, the
answer cache off everywhere:

1. native ``POST /v1/collections/{c}/query``, JSON; 2. ``POST /v1/chat/completions``, JSON;
3. native with ``"stream": true``: time to the first ``token`` event; 4. chat completions with
``"stream": true``: time to the first chunk that carries content.

The overhead per chat completion is (2) - (1) per question; the streaming figure is (4) - (3) per question:
how long after the native ``token`` event the first OpenAI content chunk arrives. Both hold what the chat
route adds: the transcript and its planning (rewrite check, the key's preferences read from SQL, history
fitting), the OpenAI shaping (annotations, usage counted with the token counter) and its SSE framing.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from typing import Any

import httpx

from bench.common import Report, heading, print_table, progress, summary_ms
from bench.serving import (
    add_server_env,
    clapnq,
    create_collection,
    passage_file,
    serve,
    server_env,
    upload_files,
    wait_indexed,
)

COLLECTION = "chat"
NATIVE = f"/v1/collections/{COLLECTION}/query"
CHAT = "/v1/chat/completions"


def native_body(question: str, top_k: int, stream: bool) -> dict[str, Any]:
    return {"query": question, "top_k": top_k, "cache": False, "stream": stream}


def chat_body(question: str, top_k: int, stream: bool) -> dict[str, Any]:
    return {
        "model": COLLECTION,
        "messages": [{"role": "user", "content": question}],
        "stream": stream,
        "rag": {"top_k": top_k, "cache": False},
    }


def timed_json(client: httpx.Client, path: str, body: dict[str, Any]) -> float:
    started = time.perf_counter()
    response = client.post(path, json=body)
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        raise RuntimeError(f"{path}: HTTP {response.status_code} {response.text[:300]}")
    return elapsed


def first_native_token_ms(client: httpx.Client, body: dict[str, Any]) -> float:
    started = time.perf_counter()
    first: float | None = None
    event = ""
    with client.stream("POST", NATIVE, json=body) as response:
        for line in response.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event == "token" and first is None:
                first = (time.perf_counter() - started) * 1000
    if first is None:
        raise RuntimeError("the native stream sent no token event")
    return first


def first_chat_content_ms(client: httpx.Client, body: dict[str, Any]) -> float:
    started = time.perf_counter()
    first: float | None = None
    with client.stream("POST", CHAT, json=body) as response:
        for line in response.iter_lines():
            if not line.startswith("data:") or line.endswith("[DONE]"):
                continue
            chunk = json.loads(line.split(":", 1)[1])
            if "error" in chunk:
                raise RuntimeError(f"chat stream error: {chunk['error']}")
            delta = chunk["choices"][0]["delta"] if chunk["choices"] else {}
            if delta.get("content") and first is None:
                first = (time.perf_counter() - started) * 1000
    if first is None:
        raise RuntimeError("the chat stream sent no content")
    return first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=60, help="answerable ClapNQ-dev questions")
    parser.add_argument("--passages", type=int, default=200, help="passages indexed (gold ones first)")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3, help="questions asked each way first, not counted")
    parser.add_argument("--seed", type=int, default=0)
    add_server_env(parser)
    args = parser.parse_args()
    run_report = Report("bench.chat_overhead")
    run_report.start("bench.chat_overhead: OpenAI-compatible chat vs the native query endpoint")
    corpus, all_questions = clapnq()
    answerable = [q for q in all_questions if q.get("answerable") and q.get("gold_doc_ids")]
    questions = random.Random(args.seed).sample(answerable, min(args.questions + args.warmup, len(answerable)))
    gold = {doc for q in questions for doc in q["gold_doc_ids"]}
    passages = [p for p in corpus if p["_id"] in gold]
    passages += [p for p in corpus if p["_id"] not in gold][: max(0, args.passages - len(passages))]
    samples: dict[str, list[float]] = {"native": [], "chat": [], "native_ttft": [], "chat_ttft": []}
    with serve(server_env(args.server_env)) as server, server.client(timeout=300) as client:
        progress(f"indexing {len(passages)} passages")
        create_collection(client, COLLECTION)
        upload_files(client, COLLECTION, [passage_file(p) for p in passages])
        wait_indexed(client, COLLECTION)
        progress(f"asking {len(questions)} questions four ways")
        for n, question in enumerate(q["question"] for q in questions):
            figures = {
                "native": timed_json(client, NATIVE, native_body(question, args.top_k, False)),
                "chat": timed_json(client, CHAT, chat_body(question, args.top_k, False)),
                "native_ttft": first_native_token_ms(client, native_body(question, args.top_k, True)),
                "chat_ttft": first_chat_content_ms(client, chat_body(question, args.top_k, True)),
            }
            if n >= args.warmup:
                for key, value in figures.items():
                    samples[key].append(value)
        problems = server.log_problems()
    overhead = [c - n for c, n in zip(samples["chat"], samples["native"], strict=True)]
    ttft_gap = [c - n for c, n in zip(samples["chat_ttft"], samples["native_ttft"], strict=True)]
    summaries = {key: summary_ms(values) for key, values in samples.items()}
    summaries["chat_overhead"] = summary_ms(overhead)
    summaries["first_content_after_native_token"] = summary_ms(ttft_gap)
    heading("Native query vs OpenAI-compatible chat (same questions, alternated)")
    print_table(
        ["figure (ms)", "n", "p50", "p95", "p99", "mean"],
        [[k, s["n"], s["p50"], s["p95"], s["p99"], s["mean"]] for k, s in summaries.items()],
    )
    print(f"\nserver log problems: {problems}")
    run_report.figures = {
        "questions": len(samples["chat"]),
        "passages": len(passages),
        "top_k": args.top_k,
        "answer_mode": "extractive (server default, no LLM)",
        "summaries_ms": summaries,
        "server_log_problems": problems,
    }
    run_report.finish()


if __name__ == "__main__":
    main()
