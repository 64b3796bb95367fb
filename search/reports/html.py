"""The self-contained `report.html`: matplotlib figures as PNG data URIs, escaped texts, no scripts, no fetches."""

from __future__ import annotations

import base64
import html
import io
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from search.records import Passage
from search.reports import compute as rp
from search.reports.results import ReportData, ReportSummary

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_COLORS = {"near-duplicate": "#d62728", "translation": "#1f77b4", "related": "#9b9b9b"}
_HEATMAP_ARTICLES = 30
_GROUPS_SHOWN = 20
_BINS = np.linspace(-0.3, 1.0, 66).tolist()

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;width:100%;margin:.5em 0}
td,th{border:1px solid #ddd;padding:4px 6px;vertical-align:top;overflow-wrap:anywhere}
th{background:#f4f4f4;text-align:left}.k{white-space:nowrap}td.n{text-align:right;white-space:nowrap}.t{width:42%}
.meta{color:#666;font-size:12px}img{max-width:100%;display:block;margin:1em 0}
.cards{display:flex;gap:1em;flex-wrap:wrap}.card{border:1px solid #ddd;border-radius:6px;padding:.6em 1em}
.card b{display:block;font-size:1.6em}
"""


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _img(uri: str | None, alt: str) -> str:
    return f'<img src="{uri}" alt="{html.escape(alt)}">' if uri else f"<p class=meta>No {html.escape(alt)}.</p>"


def figure_summary(summary: ReportSummary) -> str | None:
    from matplotlib.figure import Figure

    pairs = summary.pairs_by_languages
    if not pairs:
        return None
    fig = Figure(figsize=(max(4.0, 1.2 * len(pairs) + 2), 3.2))
    ax = fig.add_subplot()
    names, bottom = list(pairs), np.zeros(len(pairs))
    for label in rp.LABELS:
        counts = np.array([pairs[n].get(label, 0) for n in names])
        ax.bar(names, counts, bottom=bottom, label=label, color=_COLORS[label])
        bottom += counts
    ax.set_ylabel("pairs")
    ax.set_title("Pairs per language pair and label")
    ax.legend(fontsize=8)
    return _png(fig)


def figure_heatmap(data: ReportData) -> str | None:
    from matplotlib.figure import Figure

    m = data.matrix
    if len(m.a) == 0:
        return None
    weight = np.bincount(m.a, weights=m.share, minlength=len(data.article_names))
    weight += np.bincount(m.b, weights=m.share, minlength=len(data.article_names))
    shown = np.sort(np.argsort(-weight, kind="stable")[:_HEATMAP_ARTICLES])
    pos = np.full(len(data.article_names), -1)
    pos[shown] = np.arange(len(shown))
    grid = np.full((len(shown), len(shown)), np.nan)
    inside = (pos[m.a] >= 0) & (pos[m.b] >= 0)
    grid[pos[m.a[inside]], pos[m.b[inside]]] = m.share[inside]
    size = 2.5 + 0.28 * len(shown)
    fig = Figure(figsize=(size + 1.5, size))
    ax = fig.add_subplot()
    image = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis")
    labels = [data.article_names[i][:28] for i in shown]
    ax.set_xticks(range(len(shown)), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(len(shown)), labels, fontsize=7)
    ax.set_xlabel("article B")
    ax.set_ylabel("article A")
    ax.set_title(f"Share of A's paragraphs with a pair in B ({len(shown)} most connected articles; white: no kNN edge)")
    fig.colorbar(image, ax=ax, shrink=0.8)
    return _png(fig)


def figure_histograms(data: ReportData) -> str | None:
    from matplotlib.figure import Figure

    cal = data.pairs.calibration
    if not cal:
        return None
    cols = min(3, len(cal))
    rows = -(-len(cal) // cols)
    fig = Figure(figsize=(4.2 * cols, 3.0 * rows))
    ids, scores = data.neighbours.ids, data.neighbours.scores
    for n, c in enumerate(cal):
        ax = fig.add_subplot(rows, cols, n + 1)
        ia, ib = data.lang_names.index(c.lang_a), data.lang_names.index(c.lang_b)
        src = np.r_[np.flatnonzero(data.lang == ia), np.flatnonzero(data.lang == ib) if ia != ib else []].astype(int)
        other = np.where(data.lang[src] == ia, ib, ia)
        s, valid = scores[src, other], ids[src, other] >= 0
        ax.hist(s[valid], bins=_BINS, color="#9ecae1", label=f"{scores.shape[2]} nearest")
        ax.hist(s[:, 0][valid[:, 0]], bins=_BINS, color="#08519c", histtype="step", label="best match")
        ax.axvline(c.related, color="#555", linestyle="--", label=f"related >= {c.related:.2f}")
        if c.near_duplicate is not None:
            ax.axvline(c.near_duplicate, color=_COLORS["near-duplicate"], label=f"near-dup >= {c.near_duplicate:.2f}")
        ax.set_title(f"{c.lang_a}-{c.lang_b} cosine", fontsize=10)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def figure_margins(data: ReportData) -> str | None:
    from matplotlib.figure import Figure

    curves = data.pairs.margins
    if not curves:
        return None
    fig = Figure(figsize=(4.2 * len(curves), 3.0))
    thresholds = {(c.lang_a, c.lang_b): c.translation for c in data.pairs.calibration}
    for n, ((la, lb), (targets, decoys)) in enumerate(curves.items()):
        ax = fig.add_subplot(1, len(curves), n + 1)
        both = np.r_[targets, decoys]
        bins = np.linspace(float(both.min()), float(both.max()) + 1e-6, 40).tolist() if len(both) else 10
        ax.hist(decoys, bins=bins, color="#fdae6b", label=f"decoys ({len(decoys)})")
        ax.hist(targets, bins=bins, histtype="step", color="#08519c", label=f"targets ({len(targets)})")
        t = thresholds.get((la, lb))
        if t is not None and np.isfinite(t):
            ax.axvline(t, color=_COLORS["translation"], linestyle="--", label=f"translation >= {t:.3f}")
        ax.set_title(f"{la}-{lb} margin of best matches", fontsize=10)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def _e(value: Any) -> str:
    return html.escape(str(value))


def _passage_cell(p: Passage) -> str:
    meta = f"{_e(p.lang)} · {_e(p.article_id)} ¶{p.paragraph}.{p.part} · {_e(p.passage_id)}"
    return f'<td class=t lang="{_e(p.lang)}"><div class=meta>{meta}</div>{_e(p.text)}</td>'


def _pairs_table(data: ReportData, label: int, top: int) -> str:
    pr = data.pairs
    chosen = np.flatnonzero(pr.label == label)
    chosen = chosen[np.argsort(-pr.score[chosen], kind="stable")][:top]
    if len(chosen) == 0:
        return "<p class=meta>None.</p>"
    rows = [
        f"<tr><td class=n>{pr.score[i]:.3f}</td><td class=n>{pr.margin[i]:.3f}</td>"
        f"{_passage_cell(data.passages[pr.a[i]])}{_passage_cell(data.passages[pr.b[i]])}</tr>"
        for i in chosen
    ]
    head = "<tr><th>score</th><th>margin</th><th>A</th><th>B</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def _calibration_table(summary: ReportSummary) -> str:
    rows = []
    for c in summary.calibration:
        how = f"<div class=meta>{_e(c['translation_how'])}</div>"
        tr = "" if c["translation"] is None else f"{c['translation']:.4f}{how}"
        dup = "" if c["near_duplicate"] is None else f"{c['near_duplicate']:.2f} (fixed)"
        rows.append(
            f"<tr><td class=k>{_e(c['lang_a'])}-{_e(c['lang_b'])}</td><td>{c['related']:.4f}"
            f"<div class=meta>{_e(c['related_how'])}</div></td><td>{tr}</td><td>{dup}</td></tr>"
        )
    head = "<tr><th>pair</th><th>related: cosine</th><th>translation: margin</th><th>near-duplicate</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def _groups_html(data: ReportData) -> str:
    parts = []
    for gid, members in enumerate(data.groups[:_GROUPS_SHOWN], start=1):
        items = "".join(
            f"<tr><td>{_e(data.passages[r].lang)}</td><td>{_e(data.passages[r].article_id)}</td>"
            f'<td lang="{_e(data.passages[r].lang)}">{_e(data.passages[r].text)}</td></tr>'
            for r in members
        )
        parts.append(f"<h3>Group {gid} ({len(members)} passages)</h3><table>{items}</table>")
    more = len(data.groups) - _GROUPS_SHOWN
    return "".join(parts) + (f"<p class=meta>… and {more} more in groups.json.</p>" if more > 0 else "")


def _alignment_html(data: ReportData) -> str:
    if data.alignment is None:
        return ""
    ps = data.passages

    def cell(rows: list[int]) -> str:
        if not rows:
            return "<td class=t></td>"
        text = "<br>".join(_e(ps[r].text) for r in rows)
        paragraphs = ", ".join(f"¶{ps[r].paragraph}" for r in rows)
        return f'<td class=t lang="{_e(ps[rows[0]].lang)}"><div class=meta>{paragraphs}</div>{text}</td>'

    rows = "".join(
        f"<tr><td>{_e(kind)}</td><td class=n>{'' if s is None else f'{s:.3f}'}</td>{cell(a)}{cell(b)}</tr>"
        for a, b, s, kind in data.alignment
    )
    return f"<h2>Alignment</h2><table><tr><th>kind</th><th>score</th><th>A</th><th>B</th></tr>{rows}</table>"


def render(data: ReportData, summary: ReportSummary, top: int = 100) -> str:
    """The whole report as one HTML document."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from", category=UserWarning)
        figures = [
            _img(figure_summary(summary), "pairs per language pair"),
            _img(figure_heatmap(data), "article matrix heatmap"),
            _img(figure_histograms(data), "score histograms per language pair"),
            _img(figure_margins(data), "translation margin histograms"),
        ]
    cards = "".join(f"<div class=card><b>{v}</b>{_e(k)}</div>" for k, v in summary.pairs.items())
    cards += f"<div class=card><b>{summary.groups}</b>groups</div>"
    langs = ", ".join(f"{_e(k)} {v}" for k, v in summary.languages.items())
    stages = ", ".join(f"{_e(k)} {v:.2f}s" for k, v in summary.stages.items())
    tables = "".join(f"<h2>Top {_e(name)} pairs</h2>{_pairs_table(data, i, top)}" for i, name in enumerate(rp.LABELS))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Similarity report</title><style>{_CSS}</style></head><body>
<h1>Similarity report</h1>
<p>{summary.passages} passages in {summary.articles} article(s) ({langs}); k = {summary.k};
{"pairs within an article included" if summary.within_article else "pairs from different articles only"}.
Search: {_e(summary.search)}. Stages: {stages}.</p>
<div class=cards>{cards}</div>
<h2>Figures</h2>{"".join(figures)}
<h2>How the thresholds were set</h2>{_calibration_table(summary)}
{tables}
<h2>Groups</h2>{_groups_html(data)}
{_alignment_html(data)}
</body></html>
"""


def write_html(out_dir: Path, data: ReportData, summary: ReportSummary, top: int = 100) -> list[str]:
    (out_dir / "report.html").write_text(render(data, summary, top), encoding="utf-8")
    return ["report.html"]
