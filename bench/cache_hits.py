"""Answer cache on ClapNQ-dev: hit rates, latency with and without the cache, and semantic false hits.

A query mix is built from ``--questions`` answerable ClapNQ-dev questions: each original, an exact repeat
(a case and punctuation change, which the exact key normalizes away) and ``--paraphrases`` deterministic
rewrites ("what is" -> "what's", polite prefixes, a word-order swap, synonyms from a small hand list), in a
seeded shuffle. A real ``ragctl serve`` indexes the gold passages plus fillers once; then, each in a fresh
server process on the same data dir:

- exact only (RAG_CACHE_EXACT=true): the mix with ``"cache": false`` (the no-cache baseline, every query
  computed), then the same mix with the cache;
- exact + semantic (RAG_CACHE_SEMANTIC=true) at each ``--thresholds`` value (RAG_CACHE_SEMANTIC_THRESHOLD).

A cached response does not say which question filled the entry, so each hit is traced to the earlier
computed response with the same retrieval ids (every stage, 100 candidates each) and answer. A *false hit*
is a paraphrase served from an entry whose question has a different gold passage. The effect on quality is
the gold passage among the served citations (and, with ``--generate``, token F1 against the references) of
the cached answer against the fresh answer to the same query from the baseline pass.

An offline table computed in this process with the same embedding model gives the same question across all
ClapNQ-dev questions: how many paraphrases reach their original at each threshold (reuse), and how many
questions have a question about a different passage that close (false-hit exposure).
Rate limits are raised for the run (RAG_RATE_LIMIT_QUERY / RAG_RATE_LIMIT_UPLOAD = 1000000/minute).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.common import Report, load_average, print_table, progress, summary_ms
from bench.serving import (
    UNLIMITED,
    add_server_env,
    clapnq,
    create_collection,
    ms,
    passage_file,
    serve,
    server_env,
    upload_files,
    wait_indexed,
)
from evaluation.answer_metrics import token_f1
from generation.cache import normalize_query
from retrieval.embedding import Embedder

COLLECTION = "cache"

SYNONYMS = {
    "movie": "film",
    "film": "movie",
    "song": "track",
    "show": "series",
    "series": "show",
    "begin": "start",
    "began": "started",
    "start": "begin",
    "first": "earliest",
    "largest": "biggest",
    "biggest": "largest",
    "died": "passed away",
    "wrote": "authored",
    "made": "created",
    "country": "nation",
    "city": "town",
    "name": "title",
    "play": "portray",
    "played": "portrayed",
    "sings": "performs",
    "sang": "performed",
    "won": "took",
    "win": "take",
    "president": "head of state",
    "located": "situated",
    "happen": "occur",
    "difference": "distinction",
    "mean": "signify",
    "meaning": "definition",
    "many": "much",
    "created": "invented",
    "invented": "created",
    "cost": "price",
    "world": "globe",
    "war": "conflict",
    "kind": "type",
    "type": "kind",
    "old": "aged",
}
CONTRACTIONS = (
    ("what is", "what's"),
    ("who is", "who's"),
    ("where is", "where's"),
    ("when is", "when's"),
    ("how is", "how's"),
    ("what are", "what're"),
    ("who was", "who's"),
)
CONTRASTS = {
    "start": "end",
    "started": "ended",
    "begin": "end",
    "began": "ended",
    "first": "last",
    "last": "first",
    "largest": "smallest",
    "biggest": "smallest",
    "highest": "lowest",
    "most": "least",
    "oldest": "youngest",
    "longest": "shortest",
    "before": "after",
    "after": "before",
    "born": "buried",
    "won": "lost",
    "win": "lose",
    "north": "south",
    "south": "north",
    "east": "west",
    "west": "east",
    "men": "women",
    "male": "female",
    "max": "min",
    "minimum": "maximum",
    "maximum": "minimum",
    "increase": "decrease",
    "positive": "negative",
    "inside": "outside",
    "top": "bottom",
    "early": "late",
    "winner": "loser",
    "cause": "effect",
    "causes": "effects",
    "advantages": "disadvantages",
    "pros": "cons",
    "mother": "father",
    "father": "mother",
    "son": "daughter",
    "husband": "wife",
    "wife": "husband",
    "king": "queen",
    "democrats": "republicans",
    "republicans": "democrats",
}
"""One word that keeps the topic and changes the answer: a cache hit between the two is wrong."""
PREFIXES = ("tell me ", "can you tell me ", "i want to know ", "please ", "do you know ")
WH_WORDS = {"what", "who", "when", "where", "which", "how", "why"}


def contract(q: str) -> str | None:
    for long, short in CONTRACTIONS:
        if re.search(rf"\b{long}\b", q):
            return re.sub(rf"\b{long}\b", short, q, count=1)
    return None


def synonym(q: str) -> str | None:
    words = q.split()
    for i, word in enumerate(words):
        if word in SYNONYMS:
            return " ".join([*words[:i], SYNONYMS[word], *words[i + 1 :]])
    return None


def swap(q: str) -> str | None:
    """Swap two adjacent words after the question word: the word-order change a hurried user makes."""
    words = q.split()
    start = 1 if words and words[0] in WH_WORDS else 0
    for i in range(start + 1, len(words) - 1):
        if len(words[i]) > 3 and len(words[i + 1]) > 3:
            return " ".join([*words[:i], words[i + 1], words[i], *words[i + 2 :]])
    return None


def contrast(q: str) -> str | None:
    words = q.split()
    for i, word in enumerate(words):
        if word in CONTRASTS and CONTRASTS[word] not in words:
            return " ".join([*words[:i], CONTRASTS[word], *words[i + 1 :]])
    return None


def prefix(q: str, n: int) -> str:
    return PREFIXES[n % len(PREFIXES)] + q


def exact_repeat(q: str) -> str:
    """Capital first letter and a question mark: the same key once normalized."""
    return q[:1].upper() + q[1:].rstrip("?") + "?"


def paraphrases(q: str, n: int, count: int) -> list[str]:
    """Deterministic rewrites that the exact key does not normalize away, preferring meaning-keeping ones."""
    found: list[str] = []
    for candidate in (contract(q), synonym(q), prefix(q, n), swap(q), synonym(contract(q) or "")):
        if candidate and normalize_query(candidate) not in {normalize_query(x) for x in [q, *found]}:
            found.append(candidate)
    return found[:count]


@dataclass(frozen=True)
class Ask:
    text: str
    kind: str  # original, repeat, paraphrase
    base: int  # index of the original question


def build_mix(questions: list[dict[str, Any]], count: int, seed: int) -> list[Ask]:
    asks: list[Ask] = []
    for i, q in enumerate(questions):
        text = q["question"].strip()
        asks.append(Ask(text, "original", i))
        asks.append(Ask(exact_repeat(text), "repeat", i))
        asks.extend(Ask(p, "paraphrase", i) for p in paraphrases(text, i, count))
    rng = random.Random(seed)
    rng.shuffle(asks)
    return asks


@dataclass
class Served:
    ask: Ask
    latency_ms: float
    hit: str | None  # None, "exact" or "semantic"
    similarity: float | None
    signature: str
    files: list[str]
    answer: str | None


def signature(body: dict[str, Any]) -> str:
    return json.dumps([body.get("retrieval"), body.get("answer")], sort_keys=True)


def run_pass(client: httpx.Client, mix: list[Ask], generate: bool, use_cache: bool, top_k: int) -> list[Served]:
    out: list[Served] = []
    for ask in mix:
        body = {"query": ask.text, "generate": generate, "top_k": top_k, "cache": use_cache}
        started = time.perf_counter()
        response = client.post(f"/v1/collections/{COLLECTION}/query", json=body)
        latency = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise RuntimeError(f"query: HTTP {response.status_code} {response.text[:300]}")
        result = response.json()
        cache = result.get("cache") or {}
        out.append(
            Served(
                ask,
                latency,
                cache.get("kind") if cache.get("hit") else None,
                cache.get("similarity"),
                signature(result),
                [c.get("filename") or "" for c in result["citations"]],
                result.get("answer"),
            )
        )
    return out


@dataclass
class Config:
    label: str
    env: dict[str, str]
    served: list[Served] = field(default_factory=list)
    baseline: list[Served] = field(default_factory=list)
    loads: str = ""


def gold_files(question: dict[str, Any]) -> set[str]:
    return {f"{doc}.txt" for doc in question["gold_doc_ids"]}


def trace(served: list[Served]) -> dict[int, set[int]]:
    """For every hit (by position): the base questions of the earlier computed responses it matches."""
    computed: dict[str, set[int]] = {}
    sources: dict[int, set[int]] = {}
    for position, s in enumerate(served):
        if s.hit is None:
            computed.setdefault(s.signature, set()).add(s.ask.base)
        else:
            sources[position] = computed.get(s.signature, set())
    return sources


def reach(served: list[Served]) -> list[str]:
    """What the cache could do for each query, given what was asked before it: ``exact`` (the same
    normalized text was asked), ``paraphrase`` (only another phrasing of the same question was) or ``new``."""
    seen_text: set[str] = set()
    seen_family: set[int] = set()
    out = []
    for s in served:
        key = normalize_query(s.ask.text)
        out.append("exact" if key in seen_text else "paraphrase" if s.ask.base in seen_family else "new")
        seen_text.add(key)
        seen_family.add(s.ask.base)
    return out


def rate(part: int, whole: int) -> str:
    return f"{part}/{whole} ({part / whole:.0%})" if whole else "-"


def analyse(config: Config, questions: list[dict[str, Any]], baseline: dict[str, Served]) -> dict[str, Any]:
    served = config.served
    sources = trace(served)
    reachable = reach(served)
    false_hits, untraced = 0, 0
    gold_kept_cached, gold_kept_fresh, f1_cached, f1_fresh = [], [], [], []
    for position, s in enumerate(served):
        if s.hit is None:
            continue
        gold = gold_files(questions[s.ask.base])
        origin = sources.get(position, set())
        if not origin:
            untraced += 1
        elif not any(gold & gold_files(questions[b]) for b in origin):
            false_hits += 1
        fresh = baseline[s.ask.text]
        gold_kept_cached.append(bool(gold & set(s.files)))
        gold_kept_fresh.append(bool(gold & set(fresh.files)))
        references = questions[s.ask.base].get("answers") or []
        if s.answer is not None and fresh.answer is not None:
            f1_cached.append(token_f1(s.answer, references) or 0.0)
            f1_fresh.append(token_f1(fresh.answer, references) or 0.0)
    hits = Counter(s.hit for s in served if s.hit)
    by_reach = Counter(reachable)
    hit_by_reach = Counter(r for r, s in zip(reachable, served, strict=True) if s.hit)
    return {
        "hit rate": rate(sum(hits.values()), len(served)),
        "exact hits": hits["exact"],
        "semantic hits": hits["semantic"],
        "exact-reachable hit": rate(hit_by_reach["exact"], by_reach["exact"]),
        "paraphrase-reachable hit": rate(hit_by_reach["paraphrase"], by_reach["paraphrase"]),
        "new-question hit": rate(hit_by_reach["new"], by_reach["new"]),
        "false hits": false_hits,
        "false-hit rate": rate(false_hits, hits["semantic"]),
        "untraced": untraced,
        "gold cited, cached": float(np.mean(gold_kept_cached)) if gold_kept_cached else float("nan"),
        "gold cited, fresh": float(np.mean(gold_kept_fresh)) if gold_kept_fresh else float("nan"),
        "F1 cached": float(np.mean(f1_cached)) if f1_cached else float("nan"),
        "F1 fresh": float(np.mean(f1_fresh)) if f1_fresh else float("nan"),
    }


def offline_table(questions: list[dict[str, Any]], mix_count: int, thresholds: list[float]) -> list[list[Any]]:
    """Cosines by the platform's embedding model, over every answerable ClapNQ-dev question."""
    embedder = Embedder("all-MiniLM-L6-v2")
    texts = [q["question"].strip() for q in questions]
    originals = np.stack([embedder.embed_query(t) for t in texts])
    pairs = [(i, p) for i, t in enumerate(texts) for p in paraphrases(t, i, mix_count)]
    rewritten = np.stack([embedder.embed_query(p) for _, p in pairs])
    own = np.array([float(rewritten[k] @ originals[i]) for k, (i, _) in enumerate(pairs)])
    golds = [gold_files(q) for q in questions]
    different = np.array([[not (golds[i] & golds[j]) for j in range(len(texts))] for i in range(len(texts))])
    cross = originals @ originals.T
    nearest_other = np.where(different, cross, -1.0).max(axis=1)
    para_cross = rewritten @ originals.T
    para_other = np.array([np.where(different[i], para_cross[k], -1.0).max() for k, (i, _) in enumerate(pairs)])
    contrasted = [(i, c) for i, t in enumerate(texts) if (c := contrast(t))]
    contrast_sim = np.array([float(embedder.embed_query(c) @ originals[i]) for i, c in contrasted])
    rows = []
    for t in thresholds:
        rows.append(
            [
                t,
                float(np.mean(own >= t)),
                float(np.mean(para_other >= t)),
                float(np.mean(nearest_other >= t)),
                int(np.sum(np.triu(cross >= t, 1) & np.triu(different, 1))),
                float(np.mean(contrast_sim >= t)),
            ]
        )
    print(
        f"\nOffline, all {len(texts)} answerable ClapNQ-dev questions and {len(pairs)} paraphrases "
        f"(cosine of all-MiniLM-L6-v2 query vectors; paraphrase to its original: p50 {np.median(own):.3f}, "
        f"min {own.min():.3f}; question to its nearest question about another passage: p50 "
        f"{np.median(nearest_other):.3f}, max {nearest_other.max():.3f}; {len(contrasted)} contrast questions "
        f"(one word changes the answer: start/end, first/last, won/lost, ...) to their original: p50 "
        f"{np.median(contrast_sim):.3f}, max {contrast_sim.max():.3f})"
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=100, help="answerable ClapNQ-dev questions in the mix")
    parser.add_argument("--paraphrases", type=int, default=2, help="rewrites per question")
    parser.add_argument("--passages", type=int, default=250, help="passages indexed (gold ones first)")
    parser.add_argument("--thresholds", default="0.90,0.93,0.95,0.97")
    parser.add_argument("--generate", action="store_true", help="answer with SmolLM2 (llama.cpp) too")
    parser.add_argument("--max-tokens", type=int, default=32, help="RAG_LLM_MAX_TOKENS with --generate")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    add_server_env(parser)
    args = parser.parse_args()
    run_report = Report("bench.cache_hits")
    thresholds = [float(t) for t in args.thresholds.split(",")]
    corpus, all_questions = clapnq()
    answerable = [q for q in all_questions if q.get("answerable") and q.get("gold_doc_ids")]
    questions = random.Random(args.seed).sample(answerable, min(args.questions, len(answerable)))
    gold = {doc for q in questions for doc in q["gold_doc_ids"]}
    passages = [p for p in corpus if p["_id"] in gold]
    passages += [p for p in corpus if p["_id"] not in gold][: max(0, args.passages - len(passages))]
    mix = build_mix(questions, args.paraphrases, args.seed)
    kinds = Counter(a.kind for a in mix)
    print(
        f"bench.cache_hits: {len(questions)} questions -> {len(mix)} queries {dict(kinds)}; {len(passages)} "
        f"passages; generation {'SmolLM2, max ' + str(args.max_tokens) + ' tokens' if args.generate else 'off'}; "
        f"rate limits raised to {UNLIMITED}; server env {server_env(args.server_env) or 'default'}"
    )
    base = {
        "RAG_LLM_BACKEND": "llama_cpp" if args.generate else "none",
        "RAG_LLM_MAX_TOKENS": str(args.max_tokens),
        **server_env(args.server_env),
    }
    configs = [Config("exact only", {**base, "RAG_CACHE_EXACT": "true", "RAG_CACHE_SEMANTIC": "false"})]
    configs += [
        Config(
            f"exact + semantic {t:.2f}",
            {**base, "RAG_CACHE_EXACT": "true", "RAG_CACHE_SEMANTIC": "true", "RAG_CACHE_SEMANTIC_THRESHOLD": str(t)},
        )
        for t in thresholds
    ]
    warm = [q["question"] for q in answerable if q not in questions][:3]
    data_dir = Path(tempfile.mkdtemp(prefix="rag-bench-cache-"))
    try:
        progress("indexing")
        with serve(base, data_dir) as server, server.client(timeout=300) as client:
            create_collection(client, COLLECTION)
            upload_files(client, COLLECTION, [passage_file(p) for p in passages])
            wait_indexed(client, COLLECTION)
        for n, config in enumerate(configs):
            progress(f"{config.label}")
            with serve(config.env, data_dir) as server, server.client(timeout=300) as client:
                for text in warm:
                    client.post(
                        f"/v1/collections/{COLLECTION}/query",
                        json={"query": text, "generate": args.generate, "cache": False},
                    )
                if n == 0:
                    config.baseline = run_pass(client, mix, args.generate, False, args.top_k)
                config.served = run_pass(client, mix, args.generate, True, args.top_k)
                config.loads = load_average()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)

    baseline = {s.ask.text: s for s in configs[0].baseline}
    print("\nLatency, client-observed (ms); the baseline pass ran in the same server process as 'exact only'")
    rows = [['no cache ("cache": false)', *latency_row(configs[0].baseline), configs[0].loads]]
    for config in configs:
        for label, subset in (
            ("miss", [s for s in config.served if s.hit is None]),
            ("exact hit", [s for s in config.served if s.hit == "exact"]),
            ("semantic hit", [s for s in config.served if s.hit == "semantic"]),
        ):
            if subset:
                rows.append([f"{config.label}: {label}", *latency_row(subset), config.loads])
        rows.append([f"{config.label}: whole mix", *latency_row(config.served), config.loads])
    print_table(["what", "n", "p50", "p95", "mean", "load avg at end"], rows)

    print(
        "\nHit rates by what was asked before (hits / such queries), and false hits: a hit whose cached answer\n"
        "was computed for a question about a different gold passage. Quality: the gold passage among the\n"
        "served citations, cached answer vs the fresh answer to the same query in the baseline pass"
    )
    headers = ["config", "hit rate", "exact", "semantic", "same text asked before", "only a paraphrase before"]
    headers += ["first ask of a question", "false hits / semantic hits", "gold cited cached/fresh"]
    if args.generate:
        headers.append("F1 cached/fresh")
    rows = []
    for config in configs:
        a = analyse(config, questions, baseline)
        row = [
            config.label,
            a["hit rate"],
            a["exact hits"],
            a["semantic hits"],
            a["exact-reachable hit"],
            a["paraphrase-reachable hit"],
            a["new-question hit"],
            a["false-hit rate"],
            f"{a['gold cited, cached']:.2f}/{a['gold cited, fresh']:.2f}",
        ]
        if args.generate:
            row.append(f"{a['F1 cached']:.3f}/{a['F1 fresh']:.3f}")
        rows.append(row)
        if a["untraced"]:
            print(f"  {config.label}: {a['untraced']} hits could not be traced to an earlier response")
    print_table(headers, rows)

    offline = offline_table(answerable, args.paraphrases, thresholds)
    print_table(
        [
            "threshold",
            "paraphrase reaches its original",
            "paraphrase reaches another passage's question",
            "questions with another passage's question that close",
            "such question pairs",
            "contrast question reaches its original (wrong answer)",
        ],
        offline,
    )
    run_report.finish()


def latency_row(served: list[Served]) -> list[Any]:
    s = summary_ms([x.latency_ms for x in served])
    return [s["n"], ms(s, "p50"), ms(s, "p95"), ms(s, "mean")]


if __name__ == "__main__":
    main()
