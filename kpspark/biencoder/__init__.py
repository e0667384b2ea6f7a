"""Bi-encoder student: multi-task training (click, search relevance, Pearson distillation from the
cross-encoder) with Matryoshka dims, ONNX export, and the ``TextEmbedder`` Spark stage."""
