"""Task names, queues and time limits: what the Celery app, the tasks and the enqueuers share."""

from __future__ import annotations

INGEST_TASK = "rag.ingest_document"
INGEST_BATCH_TASK = "rag.ingest_documents"
REINDEX_TASK = "rag.reindex_collection"
DROP_INDEX_TASK = "rag.reindex_drop_index"
PURGE_TASK = "rag.purge_expired"
REDRIVE_TASK = "rag.redrive_stale"

INGEST_QUEUE = "ingest"
REINDEX_QUEUE = "reindex"
# The longest task (a large PDF on a slow CPU) must finish well within the broker's redelivery window,
# or Redis would hand the same task to a second worker while the first still runs it.
TASK_TIME_LIMIT_S = 1800
VISIBILITY_TIMEOUT_S = 2 * TASK_TIME_LIMIT_S
PURGE_EVERY_S = 24 * 3600
