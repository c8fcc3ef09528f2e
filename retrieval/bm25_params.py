"""BM25 parameters every keyword backend scores with, so the backends rank alike.

Chosen on SciFact train by bench/tune_retrieval.py with Lucene's formula (its idf never goes negative, so
one-chunk collections still match their words); bm25s's defaults 1.5 / 0.75 rank worse with short chunks.
"""

K1 = 0.45
B = 0.2
