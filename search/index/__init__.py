"""The build on disk: store, vector index, lexical index, centering and mean bank, embedding cache, and building one."""
