"""Retrieval: keyphrase normalization/de-duplication, sharded faiss indexes, per-item top-k, the
relevance filter and the recommendation pipeline."""
