"""More like this: the passages nearest to a passage, and the articles that share the most with an article."""

from __future__ import annotations

from search.index.store import Store
from search.query.ranking import order, single, tie_key
from search.records import ArticleMatch, Hit


def similar_passages(store: Store, passage_id: str, k: int, exclude_same_article: bool = True) -> list[Hit]:
    """The passages nearest to a passage, in any language, ranked like a dense search (ties by passage id)."""
    row = store.row_of(passage_id)
    source = store.keys_at([row])[row]
    # At most this many neighbours are dropped: the passage itself or, when excluded, all of its article.
    dropped = len(store.article_rows(source.article_id)) if exclude_same_article else 1
    found = store.search(store.vectors_at([row])[0], k + dropped)
    keys = store.keys_at([r for r, _ in found])
    keep = [
        (r, s) for r, s in found if r != row and not (exclude_same_article and keys[r].article_id == source.article_id)
    ]
    page = order(single("dense", keep), keys)[:k]
    passages = store.passages_at(c.row for c in page)
    return [Hit(rank, c.score, passages[c.row]) for rank, c in enumerate(page, start=1)]


def similar_articles(store: Store, article_id: str, k: int, neighbours: int = 10) -> list[ArticleMatch]:
    """Articles that share the most content with this one, rolled up from its passages' nearest neighbours.

    For each passage of the article its `neighbours` nearest passages in other articles are found; an
    article B scores the mean, over this article's passages, of the best match in B (0 where none of B is
    among the neighbours), and `matched_passages` counts this article's passages that found B at all.
    """
    rows = store.article_rows(article_id)
    best: dict[str, dict[int, float]] = {}
    for row, xq in zip(rows, store.vectors_at(rows), strict=True):
        found = store.search(xq, neighbours + len(rows))
        keys = store.keys_at([r for r, _ in found])
        for r, score in found:
            other = keys[r].article_id
            if other != article_id:
                per_row = best.setdefault(other, {})
                per_row[int(row)] = max(per_row.get(int(row), -1.0), score)
    titles = {a.article_id: a.title for a in store.articles()}
    matches = [
        ArticleMatch(other, titles.get(other, other), sum(scores.values()) / max(1, len(rows)), len(scores))
        for other, scores in best.items()
    ]
    matches.sort(key=lambda m: (tie_key(m.score), m.article_id))
    return matches[:k]
