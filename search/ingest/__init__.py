"""Reading articles and pure text work: formats, chunking into passages, language identification."""
