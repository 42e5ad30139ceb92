"""The analyses of the web UI in Debian's Chromium, on the session's served demo dataset: the
Compare tab and a lasso's comparison (against ``scipy.stats.ttest_ind(equal_var=False)`` on the
same cells), the embedding's filters, hover, legend toggles, axis labels and reset, violins
(against ``numpy.histogram``), any grouping, numeric filters and the dendrogram order (against
pandas + scipy). Numbers drawn are read from the page's ``data-*`` attributes.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import numpy as np
import pandas as pd
import pytest
from _web import Page, Served, chips, expect, marker
from scipy import stats
from scipy.cluster.hierarchy import dendrogram, linkage
from scipy.spatial.distance import squareform

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _rows(ui: Page) -> list[dict[str, str]]:
    return ui.page.locator("#compare-table tbody tr").evaluate_all("ns => ns.map(n => ({...n.dataset}))")


def _check_welch(served: Served, rows: list[dict[str, str]], a: np.ndarray, b: np.ndarray) -> None:
    """The rows' t, p, fold changes and means against scipy / numpy on the same cells."""
    assert rows, "no gene shown"
    cols = [served.adata.var_names.get_loc(r["gene"]) for r in rows]
    t, p = stats.ttest_ind(served.lognorm[a][:, cols], served.lognorm[b][:, cols], equal_var=False)
    mean_a, mean_b = served.lognorm[a][:, cols].mean(axis=0), served.lognorm[b][:, cols].mean(axis=0)
    lfc = np.log2((np.expm1(mean_a) + 1e-9) / (np.expm1(mean_b) + 1e-9))
    np.testing.assert_allclose([float(r["t"]) for r in rows], t, rtol=1e-9)
    np.testing.assert_allclose([float(r["pval"]) for r in rows], p, rtol=1e-7, atol=1e-300)
    np.testing.assert_allclose([float(r["meanA"]) for r in rows], mean_a, rtol=1e-9)
    np.testing.assert_allclose([float(r["meanB"]) for r in rows], mean_b, rtol=1e-9)
    np.testing.assert_allclose([float(r["logfoldchange"]) for r in rows], lfc, rtol=1e-9, atol=1e-12)
    ts = [float(r["t"]) for r in rows]
    assert ts == sorted(ts, reverse=True)


def test_compare_two_groups_and_add_a_gene(ui: Page, served: Served) -> None:
    groups = served.adata.obs["cell_type"].cat.categories.tolist()
    ui.open(f"dataset=demo&groupby=cell_type&tab=compare&ca=group:{groups[1]}&cb=group:{groups[2]}")
    codes = served.adata.obs["cell_type"].astype(str).to_numpy()
    a, b = codes == groups[1], codes == groups[2]
    table = ui.page.locator("#compare-table table")
    assert (int(table.get_attribute("data-a-cells")), int(table.get_attribute("data-b-cells"))) == (
        a.sum(),
        b.sum(),
    )
    rows = _rows(ui)
    assert len(rows) == 25
    _check_welch(served, rows, a, b)
    # the adjusted p: Benjamini-Hochberg over every gene (scipy), p of 1 where t is undefined
    _, p = stats.ttest_ind(served.lognorm[a], served.lognorm[b], equal_var=False)
    adjusted = dict(
        zip(served.adata.var_names, stats.false_discovery_control(np.nan_to_num(p, nan=1.0)), strict=True)
    )
    for r in rows:
        assert float(r["pvalAdj"]) == pytest.approx(adjusted[r["gene"]], rel=1e-7, abs=1e-300)
    ui.page.locator("#compare-b").select_option("rest")  # against every other cell
    ui.idle()
    _check_welch(served, _rows(ui), a, ~a)
    gene = _rows(ui)[0]["gene"]
    ui.page.locator("#compare-table").get_by_role("button", name=f"Add {gene} to the plot").click()
    assert chips(ui, count=1) == [gene]


def _winding(x: np.ndarray, y: np.ndarray, polygon: list[list[float]]) -> np.ndarray:
    """Points inside a polygon by the winding number (not the server's even-odd ray test)."""
    inside = np.zeros(x.shape, dtype=np.int64)
    for (x0, y0), (x1, y1) in zip(polygon, polygon[1:] + polygon[:1], strict=True):
        side = (x1 - x0) * (y - y0) - (x - x0) * (y1 - y0)
        inside += ((y0 <= y) & (y1 > y) & (side > 0)).astype(np.int64)
        inside -= ((y0 > y) & (y1 <= y) & (side < 0)).astype(np.int64)
    return inside != 0


def _draw_lasso(ui: Page) -> None:
    ui.page.get_by_role("button", name="Lasso").click()
    box = ui.page.locator("#scatter").bounding_box()
    cx, cy, r = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, box["width"] * 0.22
    points = [
        (cx + r * np.cos(t) * (1.3 if k % 2 else 0.8), cy + r * np.sin(t))
        for k, t in enumerate(np.linspace(0, 6, 14))
    ]
    ui.page.mouse.move(*points[0])
    ui.page.mouse.down()
    for p in points[1:]:
        ui.page.mouse.move(*p, steps=3)
    ui.page.mouse.up()
    ui.page.locator(".lasso-count").wait_for()


def test_a_lasso_compared_with_the_rest_equals_scipy_welch_on_the_same_cells(
    ui: Page, served: Served
) -> None:
    ui.open("dataset=demo&tab=embedding&color=cell_type")
    _draw_lasso(ui)
    count = int(ui.page.locator(".lasso-count").get_attribute("data-cells"))
    ui.page.get_by_role("button", name="Compare with the rest").click()
    ui.idle()
    assert ui.page.get_by_role("tab", name="Compare").get_attribute("aria-selected") == "true"
    choice = parse_qs(urlparse(ui.page.url).query)["ca"][0]
    key, points = choice.removeprefix("lasso:").split("~")
    polygon = [[float(v) for v in p.split(",")] for p in points.split(";")]
    umap = np.asarray(served.adata.obsm[key], dtype=np.float32).astype(np.float64)
    inside = _winding(umap[:, 0], umap[:, 1], polygon)
    assert 50 < inside.sum() < served.adata.n_obs - 50 and count == inside.sum()
    assert int(ui.page.locator("#compare-table table").get_attribute("data-a-cells")) == inside.sum()
    _check_welch(served, _rows(ui), inside, ~inside)
    # the same lasso as a filter: the embedding keeps its cells, the dot plot re-aggregates them
    ui.page.get_by_role("tab", name="Embedding").click()
    ui.idle()
    _draw_lasso(ui)
    ui.page.get_by_role("button", name="Filter to these cells").click()
    ui.idle()
    lasso = parse_qs(urlparse(ui.page.url).query)["lasso"][0].split("~")[1]
    inside = _winding(umap[:, 0], umap[:, 1], [[float(v) for v in p.split(",")] for p in lasso.split(";")])
    assert int(ui.page.locator("#scatter").get_attribute("data-kept")) == inside.sum()
    assert ui.page.locator(".lasso-filter").count() == 1


def test_embedding_filters_hover_legend_axes_and_reset(ui: Page, served: Served) -> None:
    ui.open("dataset=demo&tab=embedding&color=cell_type&f.donor=D2")
    canvas = ui.page.locator("#scatter")
    keep = served.cells(donor=["D2"])
    types = served.adata.obs["cell_type"].astype(str).to_numpy()
    categories = served.adata.obs["cell_type"].cat.categories.tolist()
    assert int(canvas.get_attribute("data-kept")) == int(canvas.get_attribute("data-visible")) == keep.sum()
    counts = [int(t.replace(",", "")) for t in ui.page.locator("#embedding-legend .count").all_inner_texts()]
    assert counts == [int((keep & (types == c)).sum()) for c in categories]  # the legend counts kept cells
    assert ui.page.locator("#embedding-xlabel").inner_text() == "UMAP 1"
    assert ui.page.locator("#embedding-ylabel").inner_text() == "UMAP 2"
    ui.page.get_by_role("button", name=f"Hide {categories[0]}").click()
    assert int(canvas.get_attribute("data-visible")) == (keep & (types != categories[0])).sum()
    ui.page.get_by_role("button", name=f"Show only {categories[3]}").click()
    assert int(canvas.get_attribute("data-visible")) == (keep & (types == categories[3])).sum()
    ui.page.get_by_role("button", name="show all").click()
    assert int(canvas.get_attribute("data-visible")) == keep.sum()
    # hover: the tooltip names the cell under the pointer and its categories
    box = canvas.bounding_box()
    for fx, fy in ((fx, fy) for fx in np.linspace(0.2, 0.8, 13) for fy in np.linspace(0.2, 0.8, 13)):
        ui.page.mouse.move(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
        if canvas.get_attribute("data-hover") is not None:
            break
    index = int(canvas.get_attribute("data-hover"))
    tip = ui.page.locator("#tooltip")
    expect(tip).to_be_visible()
    lines = tip.inner_text().split("\n")
    row = served.adata.obs.iloc[index]
    assert lines[0] == f"cell {served.adata.obs_names[index]}"
    assert f"cell_type: {row['cell_type']}" in lines and f"donor: {row['donor']}" in lines
    # zoom, then the visible reset brings the first picture back
    ui.page.mouse.move(box["x"] + 10, box["y"] + 10)
    before = canvas.screenshot()
    ui.page.mouse.wheel(0, -600)
    ui.page.wait_for_timeout(150)
    assert canvas.screenshot() != before
    ui.page.get_by_role("button", name="Reset view").click()
    ui.page.wait_for_timeout(150)
    assert canvas.screenshot() == before


def test_violins_are_numpy_histograms_with_group_sizes_and_sticky_labels(ui: Page, served: Served) -> None:
    gene = marker(served)
    genes = [gene, *[str(g) for g in served.adata.var_names[:11]]]
    query = "&".join(f"gene={g}" for g in genes)
    ui.open(f"dataset=demo&{query}&tab=distribution&layer=input&f.donor=D1&f.donor=D3")
    keep = served.cells(donor=["D1", "D3"])
    types = served.adata.obs["cell_type"].astype(str).to_numpy()
    labels = ui.page.locator("#distribution-chart g.row-labels text").evaluate_all(
        "ns => ns.map(n => [n.dataset.group, Number(n.dataset.n), n.textContent])"
    )
    assert labels and all(
        n == (keep & (types == g)).sum() and text == f"{g} ({n:,})" for g, n, text in labels
    )
    read = "ns => ns.map(n => ({...n.dataset}))"
    shown = ui.page.locator("#distribution-chart g.violin").evaluate_all(read)
    assert len(shown) == len(genes) * len(labels)
    for v in shown:
        j = served.adata.var_names.get_loc(v["gene"])
        column = served.x[:, j]
        cells = column[keep & (types == v["group"]) & (column != 0)]
        assert int(v["n"]) == (keep & (types == v["group"])).sum() and int(v["nnz"]) == cells.size
        assert float(v["zero"]) == pytest.approx(1 - cells.size / int(v["n"]))
        if not v["edges"]:
            assert column[keep].max() == 0
            continue
        edges = np.array([float(e) for e in v["edges"].split(",")])
        np.testing.assert_array_equal(edges, np.histogram_bin_edges(column[keep & (column != 0)], bins=40))
        assert [int(c) for c in v["counts"].split(",")] == np.histogram(cells, bins=edges)[0].tolist()
    chart = ui.page.locator("#distribution-chart")
    assert chart.evaluate("c => c.scrollWidth > c.clientWidth")  # 12 genes: wider than the page
    chart.evaluate("c => { c.scrollLeft = 400; c.dispatchEvent(new Event('scroll')); }")
    expect(ui.page.locator("#distribution-chart g.row-labels")).to_have_attribute(
        "transform", "translate(400 0)"
    )
    legend = ui.page.locator("#distribution-legend").bounding_box()
    assert legend["x"] + legend["width"] <= 1400  # the legend stays on the page


def test_any_grouping_numeric_filter_and_dendrogram_order(ui: Page, served: Served) -> None:
    gene = marker(served)
    ui.open(f"dataset=demo&gene={gene}&gene=CD3E&gene=MS4A1&gene=LYZ&gene=NKG7")
    ui.page.locator("#groupby").select_option("sex")
    ui.idle()
    ui.page.locator("#groupby2").select_option("condition")  # a pair ingest did not precompute
    ui.idle()
    assert "groupby=sex%2Ccondition" in ui.page.url
    j = served.adata.var_names.get_loc(gene)
    label = (served.adata.obs["sex"].astype(str) + "_" + served.adata.obs["condition"].astype(str)).to_numpy()
    dots = ui.dots(gene)
    assert (
        set(dots) == set(label)
        and ui.page.locator("#dotplot-chart").get_attribute("data-source") == "computed"
    )
    for group, (mean, frac) in dots.items():
        cells = served.lognorm[label == group, j]
        assert mean == pytest.approx(cells.mean(), rel=1e-9) and frac == pytest.approx((cells != 0).mean())
    # a numeric range filter on an obs column that ingest added
    n_genes = (served.x != 0).sum(axis=1)
    threshold = int(np.median(n_genes))
    ui.page.get_by_text("n_genes_by_counts").click()
    box = ui.page.get_by_label("n_genes_by_counts at least")
    box.fill(str(threshold))
    box.press("Enter")
    ui.idle()
    assert f"r.n_genes_by_counts={threshold}%3A" in ui.page.url
    keep = n_genes >= threshold
    dots = ui.dots(gene)
    assert set(dots) == set(label[keep])
    for group, (mean, _) in dots.items():
        assert mean == pytest.approx(served.lognorm[keep & (label == group), j].mean(), rel=1e-9)
    # groups in dendrogram order (cell types, the filter kept): pandas' correlation, scipy's tree
    ui.page.locator("#groupby").select_option("cell_type")
    ui.idle()
    ui.page.locator("#groupby2").select_option("")
    ui.idle()
    ui.page.get_by_label("Order groups by a dendrogram").first.check()
    ui.idle()
    shown = ui.page.locator("#dotplot-chart g.row-labels text").evaluate_all(
        "ns => ns.map(n => n.dataset.group)"
    )
    genes = [gene, "CD3E", "MS4A1", "LYZ", "NKG7"]
    cols = [served.adata.var_names.get_loc(g) for g in genes]
    frame = pd.DataFrame(
        served.lognorm[keep][:, cols], index=served.adata.obs["cell_type"].astype(str).to_numpy()[keep]
    )
    means = frame.groupby(level=0).mean().loc[sorted(set(shown), key=shown.index)]
    means = means.loc[[g for g in served.adata.obs["cell_type"].cat.categories if g in means.index]]
    z = linkage(squareform(1 - means.T.corr().clip(-1, 1).to_numpy(), checks=False), method="complete")
    assert shown == [means.index[i] for i in dendrogram(z, no_plot=True)["leaves"]]
    assert ui.page.locator("#dotplot-chart g.dendrogram polyline").count() == len(shown) - 1
    assert "dendro=1" in ui.page.url
