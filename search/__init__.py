"""Multilingual semantic search over articles: paragraphs, e5 embeddings, FAISS, FastAPI."""

__version__ = "0.1.0"
