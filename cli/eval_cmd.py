"""``ragctl eval``: score a collection on an evaluation set, optionally gated on a baseline report."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from cli.remote import connect, fail, target
from core.config import Settings
from core.errors import RagError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def eval_command(
    ctx: typer.Context,
    dataset: Annotated[Path, typer.Option(help="Eval set folder (BEIR or RAG layout, see eval_sets/).")],
    collection: Annotated[str, typer.Option("--collection", "-c", help="Collection to ingest into / reuse.")],
    mode: Annotated[str, typer.Option(help="hybrid, vector, keyword, all, or a list like vector,hybrid.")] = ("hybrid"),
    generate: Annotated[bool, typer.Option(help="Also generate answers and score them.")] = False,
    answer_mode: Annotated[
        str | None,
        typer.Option(
            help="With --generate: extractive, generative, auto, all, or a list like extractive,auto; each is "
            "scored on its own (default: the server's RAG_ANSWER_MODE)."
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write the JSON report here.")] = None,
    baseline: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="Compare with this report; exit 1 on regression."),
    ] = None,
    tolerance: Annotated[float, typer.Option(help="Largest allowed drop of a score (absolute).")] = 0.01,
    relative_tolerance: Annotated[
        float, typer.Option(help="Largest allowed growth of latency, tokens or cost (share of baseline).")
    ] = 0.25,
    split: Annotated[str, typer.Option(help="BEIR qrels file to use (qrels/<split>.tsv).")] = "test",
    limit: Annotated[int | None, typer.Option(help="Only the first N questions (quick runs).")] = None,
    top_k: Annotated[int, typer.Option("--top-k", help="Hits given to the LLM when generating.")] = 5,
    judge: Annotated[bool, typer.Option(help="LLM-as-judge faithfulness through the configured LLM.")] = False,
    consistency: Annotated[int, typer.Option(help="Questions asked twice to measure consistency.")] = 10,
    price_prompt_per_1k: Annotated[float, typer.Option(help="Price of 1,000 prompt tokens.")] = 0.0,
    price_completion_per_1k: Annotated[float, typer.Option(help="Price of 1,000 completion tokens.")] = 0.0,
) -> None:
    """Ingest an eval set through the real pipeline (or reuse it), ask every question, print the scores.

    With --server, the corpus is uploaded and every question asked through the server's HTTP API."""
    from evaluation.datasets import load_dataset
    from evaluation.report import compare, format_comparison, format_report
    from evaluation.runner import EvalOptions, parse_answer_modes, parse_modes, run_eval

    try:
        modes = parse_modes(mode)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--mode") from exc
    try:
        answer_modes = parse_answer_modes(answer_mode)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--answer-mode") from exc
    baseline_report = json.loads(baseline.read_text()) if baseline else None
    options = EvalOptions(
        modes=modes,
        generate=generate,
        top_k=top_k,
        consistency_questions=consistency if generate else 0,
        judge=judge,
        price_prompt_per_1k=price_prompt_per_1k,
        price_completion_per_1k=price_completion_per_1k,
        answer_modes=answer_modes,
    )
    eval_set = load_dataset(dataset, split=split, limit=limit)
    server = target(ctx)
    if server.url:
        from evaluation.over_http import HttpTarget

        if judge:
            raise typer.BadParameter(
                "the judge runs the LLM in this process; drop it with --server", param_hint="--judge"
            )
        with connect(server) as rag:
            report = run_eval(HttpTarget(rag), eval_set, collection, options)
    else:
        from evaluation.in_process import ServicesTarget
        from runtime.services import Services

        services = Services(Settings())
        try:
            report = run_eval(ServicesTarget(services), eval_set, collection, options)
        except RagError as exc:
            fail(exc)
            return
        finally:
            services.close()
    typer.echo(format_report(report))
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2, default=str) + "\n")
        typer.echo(f"\nreport written to {out}")
    failed = False
    if report["errors"]:
        typer.secho(f"\n{len(report['errors'])} question(s) failed; first: {report['errors'][0]}", err=True)
        failed = True
    if baseline_report is not None:
        comparison = compare(report, baseline_report, tolerance, relative_tolerance)
        typer.echo(f"\ncompared with {baseline}:\n{format_comparison(comparison)}")
        failed = failed or not comparison.passed
    if failed:
        raise typer.Exit(1)


if __name__ == "__main__":
    typer.run(eval_command)
