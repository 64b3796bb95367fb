"""The HTTP API's request and response models: every parameter and field documented in the OpenAPI schema.

Hits are serialized once, by `records.Hit.as_dict`, and validated into these models, so the API, MCP and
`search query --json` give the same shape. A search's inputs become a `SearchQuery` once, by
`SearchRequest.to_query`: GET and POST /search, the batch and MCP's `search_passages` all go through it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from search.index.build import BuildSummary
from search.records import GroupBy, Mode, SearchQuery, SearchResult, Translations


class PassageOut(BaseModel):
    passage_id: str = Field(description="stable across rebuilds of the same text in the same article")
    article_id: str
    title: str
    paragraph: int = Field(description="0-based paragraph number in the article")
    part: int = Field(description="0-based part of a paragraph too long for the model")
    start: int = Field(description="character offset of the passage in the article text")
    end: int
    lang: str = Field(description="ISO 639-1 code of the passage's language, 'und' if undetermined")
    section: str | None = Field(None, description="the heading the passage stands under, if any")
    page: int | None = Field(None, description="1-based page of a PDF where the passage begins; null for other files")
    text: str


class ContextOut(PassageOut):
    position: Literal["before", "after"] = Field(description="where this context passage stands relative to the hit")


class HighlightOut(BaseModel):
    start: int = Field(description="character offset of the sentence in the hit's text")
    end: int
    text: str
    score: float = Field(description="cosine similarity of the sentence to the query")


class TranslationOut(BaseModel):
    passage_id: str
    lang: str = Field(description="ISO 639-1 code of the translation's language")
    text: str | None = Field(
        None, description="its text (with translations=collapse; with together the member is a hit of its own)"
    )


class PassageDetailOut(PassageOut):
    translations: list[TranslationOut] = Field(
        default_factory=list, description="the passages of the index that translate this one (its translation group)"
    )


class HitOut(PassageOut):
    rank: int
    score: float = Field(
        description="dense: cosine of the centered query and passage vectors; lexical: BM25; "
        "hybrid: reciprocal rank fusion, sum of weight / (rrf_k + rank) over the lists. Higher is better."
    )
    ranks: dict[str, int] = Field(default_factory=dict, description="rank of the passage in each fused list")
    context: list[ContextOut] = Field(default_factory=list, description="neighbouring passages, when context > 0")
    highlights: list[HighlightOut] = Field(default_factory=list, description="best sentences, when highlight=true")
    article_matches: int | None = Field(None, description="candidates from the same article, with group_by=article")
    translations: list[TranslationOut] = Field(
        default_factory=list,
        description="the other members of the hit's translation group (translations=collapse or together)",
    )


# A search as the edges name its inputs (`lang`, `article`); a comment, not a docstring, which OpenAPI would show.
class SearchRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"query": "普京如何看待俄美关系?", "k": 5, "lang": ["en"], "mode": "hybrid", "context": 1}]
        },
    )
    query: str = Field(description="the question or text to search for, in any language")
    k: int = Field(10, description="number of hits, 1..100")
    lang: list[str] = Field(default_factory=list, description="only passages in these languages")
    article: list[str] = Field(default_factory=list, description="only passages of these articles")
    mode: Mode | None = Field(None, description="dense, lexical or hybrid [default: the server's]")
    offset: int = Field(0, description="skip this many hits (stable pagination)")
    min_score: float | None = Field(None, description="drop hits scoring below this")
    published_after: str | None = Field(None, description="only articles published on or after this day (YYYY-MM-DD)")
    published_before: str | None = Field(None, description="only articles published on or before this day (YYYY-MM-DD)")
    metadata: dict[str, str] = Field(default_factory=dict, description="equality on article metadata fields")
    context: int = Field(0, description="paragraphs before and after each hit to include, 0..10")
    highlight: bool = Field(False, description="add the sentences most similar to the query")
    group_by: GroupBy | None = Field(None, description="one hit per article")
    translations: Translations | None = Field(
        None,
        description="collapse: one hit per translation group (in the query's language if it has one), its other "
        "languages listed; together: every member, next to each other; off: groups unused [default: the server's]",
    )
    diversity: float = Field(
        0.0,
        description="0..1: 0 ranks by relevance alone; higher trades relevance for hits unlike those above them "
        "(maximal marginal relevance), so near-duplicates and translations do not fill the k slots",
    )

    def to_query(self) -> SearchQuery:
        return SearchQuery(
            self.query,
            k=self.k,
            langs=self.lang,
            articles=self.article,
            mode=self.mode,
            offset=self.offset,
            min_score=self.min_score,
            published_after=self.published_after,
            published_before=self.published_before,
            metadata=self.metadata,
            context=self.context,
            highlight=self.highlight,
            group_by=self.group_by,
            translations=self.translations,
            diversity=self.diversity,
        )


class SearchResponse(BaseModel):
    query: str
    query_lang: str = Field(description="detected language of the query")
    mode: Mode = Field(description="how the hits were ranked")
    took_ms: float
    hits: list[HitOut]

    @classmethod
    def of(cls, r: SearchResult) -> SearchResponse:
        return cls.model_validate(r.as_dict())


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    queries: list[SearchRequest] = Field(min_length=1, max_length=256, description="1..256 searches")


class BatchResponse(BaseModel):
    results: list[SearchResponse] = Field(description="one response per query, in order")


class SimilarPassagesOut(BaseModel):
    passage_id: str
    hits: list[HitOut]


class ArticleMatchOut(BaseModel):
    article_id: str
    title: str
    score: float = Field(description="mean over this article's passages of the best match in the other article")
    matched_passages: int = Field(description="this article's passages with a neighbour in the other article")


class SimilarArticlesOut(BaseModel):
    article_id: str
    articles: list[ArticleMatchOut]


class ArticleOut(BaseModel):
    article_id: str
    title: str
    languages: list[str]
    passages: int
    metadata: dict[str, Any]


class VectorIndexOut(BaseModel):
    type: str = Field(description="the FAISS index, e.g. IndexIDMap2(IndexHNSWSQ(QT_8bit))")
    kind: str = Field(description="flat (exact), hnsw_sq8 or ivf_pq_sq8 (approximate)")
    metric: str = "inner_product"
    exact: bool
    params: dict[str, Any] = Field(description="build parameters and the search parameters tuned at build time")
    recall_at_10: float | None = Field(description="recall@10 against exact search on held-out vectors at build")
    target_recall: float | None = Field(None, description="the recall@10 the search parameters were tuned to")
    tune_queries: int = Field(0, description="held-out vectors the recall was measured on")
    build_seconds: float | None = None
    bytes_per_vector: float | None = Field(None, description="serialized index size per vector")


class SegmentOut(BaseModel):
    id: str
    passages: int = Field(description="rows in the segment, deleted ones included")
    deleted: int = Field(description="rows of articles deleted or replaced since it was written (gone at its merge)")
    kind: str | None = Field(description="its vector index: flat (exact) or an approximate kind")


class HealthOut(BaseModel):
    status: str
    model: str | None = Field(description="the model the index was built with (SEARCH_MODEL)")
    model_about: str | None = Field(
        None, description="what that name stands for, e.g. the default's restored copy of multilingual-e5-small"
    )
    precision: str = Field(
        "fp32", description="the encoder's precision profile the index was built (and is searched) with"
    )
    index_size: int
    build_id: str
    built_at: str | None
    centering: dict[str, Any] | None
    vector_index: VectorIndexOut | None = None
    translations: dict[str, Any] | None = Field(
        None,
        description="the build's translation groups (groups, passages_in_groups, pairs, knn); null for a build made "
        "before them, whose searches then run as translations=off",
    )
    segments: list[SegmentOut] = Field(
        default_factory=list,
        description="the build's segments, oldest first: one after a full build or `search compact`; each write adds "
        "a small one, and merges join them",
    )


class ErrorBody(BaseModel):
    code: str = Field(description="machine-readable error kind")
    message: str = Field(description="what is wrong and what to do")


class ErrorOut(BaseModel):
    """Every error answers in this one shape."""

    error: ErrorBody


class ArticleIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"text": "First paragraph.\n\nSecond paragraph.", "title": "A title"}]},
    )
    text: str = Field(description="the article text; blank lines separate paragraphs")
    title: str | None = Field(None, description="[default: the article id]")
    metadata: dict[str, Any] = Field(default_factory=dict, description="url, published, source, lang, ...")


class WriteOut(BaseModel):
    build_id: str
    articles: int
    passages: int
    embedded: int = Field(description="passages sent to the model")
    reused: int = Field(description="passages whose vectors came from the embedding cache")
    removed: int = Field(description="passages of the previous build that are gone")


class ReloadOut(BaseModel):
    reloaded: bool
    build_id: str


class SnapshotIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"name": "2025-06-01-nightly"}]})

    name: str = Field(
        description="the snapshot's folder, created inside SEARCH_SNAPSHOT_DIR: letters, digits, '.', '_', '-'; "
        "it must not exist yet (or be empty)",
        max_length=100,
    )


class SnapshotOut(BaseModel):
    path: str = Field(description="where the snapshot is, on the server: an index folder `search serve` can use")
    build_id: str = Field(description="the published build it copies")
    files: int = Field(description="files in the snapshot's build, its manifest included")
    bytes: int = Field(description="their total size (hard-linked files take no new space)")
    linked: int = Field(description="files hard-linked to the build's (builds are never changed)")
    copied: int = Field(description="files copied, where the file system cannot hard-link")
    seconds: float = Field(description="time taken, checking every file against the manifest included")


class EmbeddingsRequest(BaseModel):
    """OpenAI's embeddings request (`openai.embeddings.create`, LangChain's OpenAIEmbeddings, LlamaIndex's
    OpenAIEmbedding), plus `input_type`."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"input": ["普京如何看待俄美关系?"], "input_type": "query"}]},
    )
    input: str | list[str] = Field(description="a text or a list of 1..256 texts (token arrays are not accepted)")
    model: str | None = Field(None, description="accepted and ignored: the server embeds with its one model")
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="float: lists of numbers; base64: each vector's little-endian float32 bytes"
    )
    input_type: Literal["query", "passage"] = Field(
        "query",
        description="the e5 prompt: query ('query: ', what a search encodes; e5's choice for symmetric tasks too) "
        "or passage ('passage: ', what an index build encodes)",
    )
    dimensions: int | None = Field(None, description="accepted only as the model's own dimension (no truncation)")
    user: str | None = Field(None, description="accepted and ignored")


class EmbeddingOut(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int = Field(description="position of the text in `input`")
    embedding: list[float] | str = Field(description="the normalized model vector (not centered), or its base64")


class EmbeddingsUsage(BaseModel):
    prompt_tokens: int = Field(description="tokens the model read, prompts and special tokens included")
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingOut]
    model: str = Field(description="the model the server embeds with (SEARCH_MODEL)")
    usage: EmbeddingsUsage


def written(summary: BuildSummary) -> WriteOut:
    return WriteOut(**{k: getattr(summary, k) for k in WriteOut.model_fields})
