"""Finding genes by the names people type: symbols or stable IDs, any case, with suggestions.

A pasted list mixes ``CD3E``, ``ms4a1`` and ``ENSG00000105374``; each entry is matched to the
dataset's canonical gene name (its var index) by, in order: the exact name, the exact stable
ID (var's ``gene_ids`` column, when the input had one), the name or ID ignoring case, and the
ID without its version suffix (``ENSG….12``). An entry that matches nothing, or whose case-
insensitive match is ambiguous (two genes differing only in case), is unknown; unknown
entries get up to five suggestions by similarity (rapidfuzz's normalized Indel ratio on
lower-cased names), best first, ties in var order.

    >>> names = GeneNames(["CD3E", "CD3D", "MS4A1"], ["ENSG00000198851", "ENSG00000167286", None])
    >>> names.resolve(["cd3e", "ENSG00000167286.9", "MS4A2", "XYZZY"])
    (['CD3E', 'CD3D'], [{'query': 'MS4A2', 'suggestions': ['MS4A1']}, {'query': 'XYZZY', 'suggestions': []}])
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from rapidfuzz import fuzz, process, utils

__all__ = ["MAX_SUGGESTIONS", "MIN_SCORE", "GeneNames"]

MAX_SUGGESTIONS = 5
MIN_SCORE = 70.0  # rapidfuzz ratio (0–100): one typo in a 4–6 letter symbol scores 75–92


class GeneNames:
    """Lookup tables over one dataset's genes (built once per snapshot)."""

    def __init__(self, names: Sequence[str], ids: Sequence[str | None] | None = None) -> None:
        self.names = [str(n) for n in names]
        self.exact: dict[str, str] = {n: n for n in self.names}
        folded: dict[str, set[str]] = {}
        for name in self.names:
            folded.setdefault(name.lower(), set()).add(name)
        for name, gene_id in zip(self.names, ids if ids is not None else [], strict=False):
            if gene_id is None or str(gene_id) in ("", "nan", "None", "<NA>"):
                continue
            gene_id = str(gene_id)
            self.exact.setdefault(gene_id, name)
            for key in {gene_id.lower(), _unversioned(gene_id).lower()}:
                folded.setdefault(key, set()).add(name)
        self.folded = folded
        self._choices = [utils.default_process(n) for n in self.names]

    def find(self, query: str) -> str | None:
        """The canonical name ``query`` stands for, or None (unknown or ambiguous)."""
        q = query.strip()
        if q in self.exact:
            return self.exact[q]
        for key in (q.lower(), _unversioned(q).lower()):
            found = self.folded.get(key)
            if found is not None:
                return next(iter(found)) if len(found) == 1 else None
        return None

    def suggest(self, query: str, limit: int = MAX_SUGGESTIONS) -> list[str]:
        """Up to ``limit`` canonical names similar to ``query``, best first."""
        q = query.strip()
        candidates = sorted(self.folded.get(q.lower(), ()))  # ambiguous case: each spelling
        hits = process.extract(
            utils.default_process(q),
            self._choices,
            scorer=fuzz.ratio,
            processor=None,
            limit=limit,
            score_cutoff=MIN_SCORE,
        )
        ranked = sorted(hits, key=lambda hit: (-hit[1], hit[2]))
        return list(dict.fromkeys([*candidates, *(self.names[i] for _, _, i in ranked)]))[:limit]

    def resolve(self, queries: Iterable[str]) -> tuple[list[str], list[dict[str, Any]]]:
        """(known canonical names in input order without repeats, unknown entries with
        suggestions); blank entries are skipped."""
        genes: dict[str, None] = {}
        unknown: dict[str, dict[str, Any]] = {}
        for query in queries:
            q = query.strip()
            if not q or q in unknown:
                continue
            name = self.find(q)
            if name is not None:
                genes.setdefault(name, None)
            else:
                unknown[q] = {"query": q, "suggestions": self.suggest(q)}
        return list(genes), list(unknown.values())


def _unversioned(gene_id: str) -> str:
    """``ENSG00000105374.12`` → ``ENSG00000105374`` (other names unchanged)."""
    stem, dot, suffix = gene_id.rpartition(".")
    return stem if dot and stem.upper().startswith("ENS") and suffix.isdigit() else gene_id
