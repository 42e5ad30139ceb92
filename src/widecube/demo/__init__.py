"""A realistic single-cell demo dataset, generated sparse and streamed to ``.h5ad``.

One module per concept: the expression model (``_model``, with the gene and cell-type
knowledge in ``_biology``), the random numbers (``_rng``), the count sampler (``_sampler``),
the annotations (``_annotations``) and the ``.h5ad`` writer (``_generate``: :func:`make_demo`).

The counts follow a per-cell-type expression model: a heavy-tailed baseline profile (MALAT1,
ribosomal and mitochondrial genes on top, most genes low), lineage programs shared by related
types, 20-50 strongly up-regulated markers per type, mild per-type and per-lineage noise, and
shared modules whose activity varies from cell to cell (cell cycle, interferon response, higher
in treated donors, dissociation stress, mitochondrial load) plus a per-donor component (XIST or
the Y-chromosome genes, a few donor-specific genes). Library sizes are log-normal.

Sampling without ever forming a dense row: a negative binomial NB(mean m, size r) is a compound
Poisson sum — ``N ~ Poisson(r·log(1 + m/r))`` clusters, each of ``Logarithmic(m/(m + r))``
UMIs. Each component ``c`` of a cell (its type program, each module, its donor) has gene
probabilities ``p_cg``. A cell of depth ``L`` giving share ``a_c`` to the component gets
NB(mean ``L·a_c·p_cg``, size ``r_g·L·a_c/L0``): at the median depth ``L0`` the usual NB with
gene size ``r_g``, and the size scales with depth, so the cluster intensity is ``L·a_c·w_cg``
with ``w_cg = r_g·log1p(L0·p_cg/r_g)/L0`` and the cluster size law is the same in every cell.
Per component we then draw ``K ~ Poisson(L·a_c·Σ_g w_cg)`` genes from a precomputed alias table
over ``w_cg`` and a Logarithmic size for each — exact NB counts in O(non-zeros) time, summed per
gene through a scratch count array and a bitmap that yields the genes in sorted order. The few
hundred genes per type that expect more than two clusters per cell (housekeeping, ribosomal,
markers) are drawn directly as gamma-Poisson instead, which is cheaper for them. ``L0`` is
solved so that the expected non-zeros per cell (Gauss-Hermite over the depth law) match the
target.

Each cell has its own counter-based random stream (splitmix64 keyed by seed and cell number),
so the output does not depend on the number of threads or on ``block_cells``; within a block
cells are processed grouped by type, so that type's table stays in cache.

Example::

    >>> from widecube.demo import make_demo
    >>> path = make_demo("pbmc_demo.h5ad", n_cells=5_000, n_genes=2_000)  # doctest: +SKIP
    >>> anndata.read_h5ad(path).obs["cell_type"].value_counts().head(3)  # doctest: +SKIP
"""

from ._generate import make_demo

__all__ = ["make_demo"]
