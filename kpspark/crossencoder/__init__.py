"""Cross-encoder assistant: 2-layer BERT over ``keyphrase [SEP] category [SEP] title``."""
