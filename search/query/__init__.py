"""Answering a query over a loaded index: candidates, fusion, ranking, paging, context and highlights."""
