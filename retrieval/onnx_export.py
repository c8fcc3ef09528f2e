"""A sentence-transformers model's transformer as an ONNX file (fp32 or int8), made locally and cached.

Nothing comes from a hub: the file is exported with ``torch.onnx.export`` from the weights the process
already loaded, then optionally quantized to int8 by ONNX Runtime (per-channel weights, as
sentence-transformers' ``export_dynamic_quantized_onnx_model`` does). bench/embedding_backends.py
compares the int8 file with torch on speed and SciFact nDCG@10 (bench/README.md).

Files are named by a digest of the weights and the tool versions, so a changed model or exporter
never reuses a stale file, and concurrent processes each write a private temp file and rename it
into place (the loser's rename is harmless: the bytes are the same).
"""

from __future__ import annotations

import hashlib
import os
import uuid
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OPSET = 17


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hybrid-rag" / "onnx"


def weights_digest(model: SentenceTransformer) -> str:
    """sha256 over the transformer's tensors and the exporter's versions (any dtype, any source)."""
    import onnxruntime
    import torch

    digest = hashlib.sha256(f"{torch.__version__}|{onnxruntime.__version__}|{OPSET}".encode())
    for name, tensor in sorted(transformer_of(model).state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:20]


def transformer_of(model: SentenceTransformer) -> Any:
    first = model[0]
    auto_model = getattr(first, "auto_model", None) or getattr(first, "model", None)
    if auto_model is None:
        raise ValueError("the ONNX embedding backends need a transformer as the model's first module")
    return auto_model


def onnx_model_path(model: SentenceTransformer, quantized: bool, cache_dir: Path) -> Path:
    """The cached ONNX file for ``model``, exporting (and quantizing) it on first use."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    digest = weights_digest(model)
    fp32 = cache_dir / f"{digest}-fp32.onnx"
    if not fp32.is_file():
        _export(model, fp32)
    if not quantized:
        return fp32
    int8 = cache_dir / f"{digest}-int8.onnx"
    if not int8.is_file():
        _quantize(fp32, int8)
    return int8


def _private_temp(path: Path) -> Path:
    return path.with_name(f".{path.stem}-{uuid.uuid4().hex}.onnx")


def _export(model: SentenceTransformer, path: Path) -> None:
    import copy

    import torch

    transformer = copy.deepcopy(transformer_of(model)).eval()
    transformer.config._attn_implementation = "eager"  # traceable attention; the same math as sdpa
    features = tokenizer_of(model)(["an example sentence to trace the graph", "another"])
    names = [name for name in INPUT_NAMES if name in features]

    class LastHidden(torch.nn.Module):
        """Positional tensors in (the exporter traces those), the last hidden state out."""

        def __init__(self) -> None:
            super().__init__()
            self.inner = transformer

        def forward(self, *inputs: Any) -> Any:
            return self.inner(**dict(zip(names, inputs, strict=True))).last_hidden_state

    axes: dict[str, dict[int, str]] = {name: {0: "batch", 1: "sequence"} for name in [*names, "last_hidden_state"]}
    tmp = _private_temp(path)
    try:
        # The tracer warns about Python-side checks in transformers' masking code; the graph is the same.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                LastHidden(),
                tuple(features[name] for name in names),
                str(tmp),
                input_names=names,
                output_names=["last_hidden_state"],
                dynamic_axes=axes,
                opset_version=OPSET,
                dynamo=False,
            )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _quantize(source: Path, path: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = _private_temp(path)
    try:
        quantize_dynamic(source, tmp, per_channel=True, reduce_range=False, weight_type=QuantType.QInt8)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def tokenizer_of(model: SentenceTransformer) -> Any:
    """The model's own input pipeline (its truncation included): ``preprocess`` in sentence-transformers 6."""
    return getattr(model, "preprocess", None) or model.tokenize
