"""Embedding models: the embedder protocol and its backends (packed torch, sentence-transformers, ONNX), the
offline default model, and micro-batching of query encodes."""
