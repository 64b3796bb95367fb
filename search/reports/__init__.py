"""Batch similarity reports: near-duplicates, translations and related passages, computed apart from rendered."""
