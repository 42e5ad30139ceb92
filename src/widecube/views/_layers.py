"""What a layer's numbers are: the kind of input, each layer's kind and unit, and which
statistics are defined for it.

An input is one of three kinds, told apart by the values pass 1 streams anyway (its scatter
kernel flags negatives and non-integers, so no extra pass over the matrix):

* ``counts``: non-negative integers (UMI or read counts). Ingest adds the ``normalized`` layer
  (log1p of counts per ``target_sum``);
* ``log1p``: non-negative, not all integers: already log-normalized (e.g. scanpy's
  ``normalize_total`` + ``log1p``, CELLxGENE's X). Served as given;
* ``scaled``: has negatives (``sc.pp.scale``'s z-scores, pbmc68k's X). Zero does not mean "not
  expressed" there, so fraction expressing and mean of expressing cells are withheld, and a
  ratio of means is no fold change, so fold changes are withheld too.

``--input-kind`` overrides the detection (non-integer counts from an EM quantifier are still
counts). The values as given are the layer ``input``, whatever their kind; it was named
``raw`` before, which collides with AnnData's ``raw`` (a different matrix), so ``raw`` is no
layer name and snapshots that used it read as ``input`` (see ``snapshot.read_manifest``).

Fold changes follow scanpy's ``rank_genes_groups``: on a log1p layer (``normalized``, or
``input`` of log1p input) ``log2((expm1(mean_in) + 1e-9) / (expm1(mean_out) + 1e-9))``; on
counts the same ratio of the means themselves.
"""

from __future__ import annotations

from typing import Literal

from ..errors import InvalidQuery

__all__ = [
    "FOLD_EXPM1",
    "FOLD_RATIO",
    "INPUT",
    "INPUT_KINDS",
    "LEGACY_RAW",
    "NORMALIZED",
    "detect_kind",
    "fold_change_method",
    "layer_kind",
    "layer_unit",
    "parse_input_kind",
    "withheld_stats",
]

INPUT = "input"
"""The layer of the values as given (counts, log1p or scaled)."""
NORMALIZED = "normalized"
"""log1p of counts per ``target_sum``, made by ingest for count input."""
LEGACY_RAW = "raw"
"""What snapshots of format < 0.3.0 called :data:`INPUT`."""
INPUT_KINDS = ("counts", "log1p", "scaled")
FOLD_EXPM1 = "expm1"
FOLD_RATIO = "ratio"

Kind = Literal["counts", "log1p", "scaled"]


def parse_input_kind(value: str | None) -> str | None:
    """``value`` checked against :data:`INPUT_KINDS` (None: detect from the data)."""
    if value is None or value == "":
        return None
    if value not in INPUT_KINDS:
        raise InvalidQuery(f"unknown input kind {value!r}; kinds: {', '.join(INPUT_KINDS)}")
    return value


def detect_kind(*, negative: bool, non_integer: bool) -> str:
    """The kind of an input from what pass 1 saw: any negative → scaled; else any
    non-integer → log1p; else counts."""
    return "scaled" if negative else "log1p" if non_integer else "counts"


def layer_kind(input_kind: str | None, layer: str) -> str | None:
    """What ``layer``'s values are: ``normalized`` is log1p; ``input`` is the input's kind
    (None: unknown, a snapshot written before kinds were recorded)."""
    return "log1p" if layer == NORMALIZED else input_kind


def layer_unit(input_kind: str | None, layer: str, target_sum: float = 1e4) -> str:
    """The unit of ``layer`` for people: ``log1p CP10k`` (normalized), ``counts``,
    ``log1p (as given)``, ``scaled (as given)``, ``values as given``."""
    if layer == NORMALIZED:
        per = "CP10k" if target_sum == 1e4 else "CPM" if target_sum == 1e6 else f"counts per {target_sum:g}"
        return f"log1p {per}"
    if input_kind == "counts":
        return "counts"
    if input_kind in ("log1p", "scaled"):
        return f"{input_kind} (as given)"
    return "values as given"


def fold_change_method(input_kind: str | None, layer: str) -> str | None:
    """How fold changes are taken on ``layer``: :data:`FOLD_EXPM1` on log1p values,
    :data:`FOLD_RATIO` on counts, None (withheld) on scaled or unknown values."""
    kind = layer_kind(input_kind, layer)
    return FOLD_EXPM1 if kind == "log1p" else FOLD_RATIO if kind == "counts" else None


def withheld_stats(input_kind: str | None, layer: str) -> dict[str, str]:
    """``{stat: why}`` for the statistics not defined on ``layer`` (empty for most)."""
    if layer_kind(input_kind, layer) != "scaled":
        return {}
    why = (
        f"withheld: layer {layer!r} holds scaled values (with negatives), where zero does not "
        "mean 'not expressed'"
    )
    return {"frac_expressing": why, "mean_expressing": why, "pct_in": why, "pct_out": why}
