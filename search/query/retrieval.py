"""Running one query against a loaded index: candidates per mode, fusion, filters, paging, context, highlights."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property

import numpy as np

from search.config import Settings
from search.index.centering import normalize_rows
from search.index.store import Store
from search.ingest.chunking import split_sentences
from search.ingest.language import SCRIPTS, LanguageGuess, script_of
from search.query.ranking import (
    Candidate,
    diversify,
    fuse_in_language,
    group_by_article,
    head,
    mmr_pool,
    order,
    single,
    with_translations,
)
from search.records import Highlight, Hit, Mode, Passage, SearchQuery, Translations

# Candidates taken from each list before fusion and paging; grouping by article needs a deeper pool.
_POOL = 100
_GROUP_POOL = 400
# A query whose language the detector is this unsure of (a lone name such as "Koltunov") is matched lexically
# against every indexed language written in the query's script, instead of a language that is only a guess.
_CONFIDENT = 0.5
_HIGHLIGHT_MARGIN = 0.02


def lexical_languages(query: str, guess: LanguageGuess, indexed: Sequence[str]) -> list[str]:
    if guess.confidences.get(guess.lang, 0.0) >= _CONFIDENT:
        return [guess.lang] if guess.lang in indexed else []
    script = script_of(query)
    same = set(SCRIPTS.get(script, [])) if script else set()
    return [lang for lang in indexed if lang in same or lang == guess.lang]


class Retriever:
    """Ranks passages of one store for a query; stateless apart from what it is given."""

    def __init__(
        self, store: Store, settings: Settings, passage_vectors: Callable[[Sequence[str]], np.ndarray]
    ) -> None:
        self.store = store
        self.settings = settings
        self._passage_vectors = passage_vectors

    def candidates(
        self, q: SearchQuery, mode: Mode, guess: LanguageGuess, xq: np.ndarray | None, rows: np.ndarray | None
    ) -> list[Candidate]:
        # A collapsed group of up to one passage per language takes one slot for several candidates.
        depth = 2 if self.translations(q) == "off" else 4
        pool = max(_GROUP_POOL if q.group_by else _POOL, depth * (q.offset + q.k))
        lists = {}
        if mode != "lexical" and xq is not None:
            lists["dense"] = self.store.search(xq, pool, rows)
        langs: list[str] = []
        if mode != "dense":
            lexical = self.store.lexical
            langs = lexical_languages(q.query, guess, lexical.languages)
            found = [hit for lang in langs for hit in lexical.search(q.query, lang, pool, rows)]
            lists["lexical"] = sorted(found, key=lambda rs: -rs[1])[:pool]
        if mode == "hybrid":
            s = self.settings
            dense = lists.get("dense", [])
            same = self.store.rows_in_languages([r for r, _ in dense], langs)
            weights = {"dense": s.dense_weight, "lexical": s.lexical_weight}
            return fuse_in_language(dense, lists["lexical"], same | {r for r, _ in lists["lexical"]}, weights, s.rrf_k)
        return single(mode, lists.get(mode, []))

    def mode(self, q: SearchQuery) -> Mode:
        """How `q` is ranked: its own mode, or the configured default."""
        return q.mode or self.settings.default_mode

    def translations(self, q: SearchQuery) -> Translations:
        """What `q` does with translation groups: its own choice or the configured default; `off` for a build
        without groups (made before them, or where the detector found none), which then searches as it always did
        and skips reading every candidate's ids (docs/api.md#translations: what collapse costs)."""
        if not self.grouped:
            return "off"
        return q.translations or self.settings.default_translations

    @cached_property
    def grouped(self) -> bool:
        """Whether any passage of the store has a translation group."""
        return self.store.has_translations and bool((self.store.translation_groups() >= 0).any())

    def run(self, q: SearchQuery, guess: LanguageGuess, vector: np.ndarray | None) -> list[Hit]:
        """The page of hits for `q`, ranked by `mode(q)`; `vector` is the query's raw vector."""
        store = self.store
        mode = self.mode(q)
        xq = store.centering.query(vector, guess.confidences, self.settings.query_means) if vector is not None else None
        rows = store.rows_matching(q.filters())
        cands = self.candidates(q, mode, guess, xq, rows)
        if q.min_score is not None:
            cands = [c for c in cands if c.score >= q.min_score]
        counts = None
        how = self.translations(q)
        if how != "off":  # translation groups (then articles) look at every candidate
            ranked = self.translated(order(cands, store.keys_at([c.row for c in cands])), how, rows, guess.lang)
            if q.group_by == "article":
                ranked, counts = group_by_article(ranked, store.keys_at([c.row for c in ranked]))
        elif q.group_by == "article":  # grouping looks at every candidate's article
            keys = store.keys_at([c.row for c in cands])
            ranked, counts = group_by_article(order(cands, keys), keys)
        else:  # only the page and its ties need ids: most candidates are never read from SQLite
            top = head(cands, mmr_pool(q.offset + q.k) if q.diversity else q.offset + q.k)
            ranked = order(top, store.keys_at([c.row for c in top]))
        if q.diversity:  # over whole pages from the top, so page 2 continues page 1's choices
            pool = ranked[: mmr_pool(q.offset + q.k)]
            rows_of = [c.row for c in pool]
            groups = store.translation_groups()[rows_of] if store.has_translations else None
            ranked = diversify(pool, store.vectors_at(rows_of), q.diversity, q.offset + q.k, groups)
        page = ranked[q.offset : q.offset + q.k]
        # text and the rest only for the hits returned (and their translations)
        passages = store.passages_at({r for c in page for r in (c.row, *c.translations)})
        hits = []
        for rank, c in enumerate(page, start=q.offset + 1):
            p = passages[c.row]
            hits.append(
                Hit(
                    rank,
                    c.score,
                    p,
                    ranks=c.ranks,
                    context=store.context(p, q.context) if q.context else [],
                    highlights=self.highlights(p, xq) if q.highlight and xq is not None else [],
                    article_matches=counts[p.article_id] if counts is not None else None,
                    translations=[passages[r] for r in c.translations],
                    translation_text=how == "collapse",
                )
            )
        return hits

    def translated(
        self, ranked: list[Candidate], how: Translations, rows: np.ndarray | None, query_lang: str
    ) -> list[Candidate]:
        """`ranked` with the store's translation groups applied (`with_translations`); a group's members are those
        the filters (`rows`) let through."""
        groups = self.store.translation_groups()
        group = {c.row: int(groups[c.row]) for c in ranked}
        members = self.store.group_members(group.values())
        if rows is not None:
            flat = np.array([r for m in members.values() for r in m], dtype=np.int64)
            allowed = set(flat[np.isin(flat, rows)].tolist())
            members = {g: [r for r in m if r in allowed] for g, m in members.items()}
        langs = self.store.langs_at([r for m in members.values() for r in m])
        return with_translations(ranked, how, group, members, langs, query_lang)

    def highlights(self, p: Passage, xq: np.ndarray) -> list[Highlight]:
        """The passage's sentences closest to the query, semantically (so it works across languages)."""
        spans = split_sentences(p.text) or [(0, len(p.text))]
        texts = [p.text[a:b] for a, b in spans]
        vectors = self._passage_vectors(texts)
        vectors = (
            normalize_rows(vectors - self.store.centering.mean_for(p.lang)) if self.store.centering.enabled else vectors
        )
        scores = vectors @ np.asarray(xq, dtype=np.float32).reshape(-1)
        best = float(scores.max())
        chosen = [i for i in np.argsort(-scores)[:2] if scores[i] >= best - _HIGHLIGHT_MARGIN]
        return [Highlight(spans[i][0], spans[i][1], texts[i], float(scores[i])) for i in sorted(chosen)]
