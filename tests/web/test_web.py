"""The web UI in headless Chromium (Debian's, driven by Playwright) over a real server.

A 3,000-cell × 500-gene demo dataset is ingested, served by uvicorn in a thread, and the UI
is used as a person would: search a gene, read the dot plot, filter, colour the embedding.
Numbers shown are compared with numpy on the input matrix and with the API's answers.
``WIDECUBE_SCREENSHOTS=<folder>`` also saves a PNG of each view there (``make screenshots``).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from xml.etree import ElementTree

import httpx2 as httpx
import numpy as np
import pytest
from _web import N_CELLS, SHOTS, Page, Served, chips, download, expect, marker

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_search_a_gene_and_read_the_dot_plot(ui: Page, served: Served) -> None:
    gene = marker(served)
    ui.open()
    assert "Add genes" in ui.page.locator("#dotplot-chart").inner_text()  # empty state, said so
    assert ui.page.locator("#session").is_hidden()  # single-user mode: nobody to sign in
    ui.add_gene(gene)
    dots = ui.dots(gene)
    api = served.api("/summary", genes=[gene], groupby="cell_type", version=served.version)
    assert list(dots) == api["groups"]
    codes = served.adata.obs["cell_type"].astype(str).to_numpy()
    j = served.adata.var_names.get_loc(gene)
    for i, group in enumerate(api["groups"]):
        mean, frac = dots[group]
        assert mean == pytest.approx(api["values"]["mean"][i][0], rel=1e-12)
        assert frac == pytest.approx(api["values"]["frac_expressing"][i][0], rel=1e-12)
        cells = served.lognorm[codes == group, j]
        assert mean == pytest.approx(cells.mean(), rel=1e-6)
        assert frac == pytest.approx((cells != 0).mean(), rel=1e-12)
    assert ui.page.get_by_role("img", name="Mean expression: colour scale").count() == 1
    assert ui.page.get_by_role("img", name="Fraction of cells expressing: dot area").count() == 1
    assert f"gene={gene}" in ui.page.url and f"version={served.version}" in ui.page.url
    table = ui.page.locator(f'#dotplot-table td[data-gene="{gene}"]')
    assert table.count() == len(api["groups"])


def test_filter_on_donor_changes_values_to_the_filtered_ones(ui: Page, served: Served) -> None:
    gene = marker(served)
    ui.open(f"dataset=demo&gene={gene}")
    before = ui.dots(gene)
    ui.page.locator("summary", has_text="donor").click()
    ui.page.locator("details.filter").filter(has_text="donor").get_by_role("button", name="none").click()
    ui.idle()
    assert "No cells match" in ui.page.locator("#dotplot-chart").inner_text()
    ui.page.get_by_role("checkbox", name="D2").check()
    ui.idle()
    after = ui.dots(gene)
    chart = ui.page.locator("#dotplot-chart")
    assert (chart.get_attribute("data-mode"), chart.get_attribute("data-source")) == ("aggregate", "computed")
    assert "f.donor=D2" in ui.page.url
    codes = served.adata.obs["cell_type"].astype(str).to_numpy()
    keep = served.cells(donor=["D2"])
    j = served.adata.var_names.get_loc(gene)
    expected_groups = [g for g in before if (keep & (codes == g)).any()]
    assert list(after) == expected_groups
    api = httpx.post(
        f"{served.url}/api/v1/datasets/demo/aggregate",
        timeout=30,
        json={
            "genes": [gene],
            "groupby": "cell_type",
            "filter": {"donor": ["D2"]},
            "stats": ["mean", "frac_expressing"],
            "version": served.version,
        },
    ).json()
    for group, (mean, frac) in after.items():
        i = api["groups"].index(group)  # the values shown are the API's filtered ones
        assert (mean, frac) == (api["values"]["mean"][i][0], api["values"]["frac_expressing"][i][0])
        cells = served.lognorm[keep & (codes == group), j]
        assert mean == pytest.approx(cells.mean(), rel=1e-6)
        assert frac == pytest.approx((cells != 0).mean(), rel=1e-12)
    assert any(after[g] != before[g] for g in after)
    ui.page.get_by_role("tab", name="Distribution").click()  # box plots: filtered quantiles
    ui.idle()
    read = "ns => ns.map(n => [n.dataset.group, Number(n.dataset.median)])"
    medians = dict(ui.page.locator("#distribution-chart g.box").evaluate_all(read))
    assert list(medians) == expected_groups
    for group, median in medians.items():
        assert median == pytest.approx(
            np.median(served.lognorm[keep & (codes == group), j]), rel=1e-5, abs=1e-6
        )


def test_filter_on_the_grouping_keeps_groups_and_survives_a_reload(ui: Page, served: Served) -> None:
    gene = marker(served)
    ui.open(f"dataset=demo&gene={gene}&f.cell_type=NK%20cell&f.cell_type=Treg&tab=heatmap&z=1")
    cells = ui.page.locator("#heatmap-chart rect[data-gene]")
    assert cells.count() == 2
    values = dict(cells.evaluate_all("ns => ns.map(n => [n.dataset.group, Number(n.dataset.value)])"))
    api = served.api("/summary", genes=[gene], groupby="cell_type", version=served.version)
    mean = dict(zip(api["groups"], (row[0] for row in api["values"]["mean"]), strict=True))
    sign = float(np.sign(mean["NK cell"] - mean["Treg"]))  # two groups: z-scores are ±1
    assert values == {"NK cell": pytest.approx(sign), "Treg": pytest.approx(-sign)}
    ui.page.reload()
    ui.idle()
    assert ui.page.get_by_role("tab", name="Heatmap").get_attribute("aria-selected") == "true"
    assert ui.page.locator("#heatmap-chart rect[data-gene]").count() == 2
    assert ui.page.locator("#zscore").is_checked()
    ui.page.get_by_label("Layer").select_option("input")
    ui.idle()
    ui.page.locator("#zscore").uncheck()
    ui.idle()
    assert "layer=input" in ui.page.url
    raw = dict(cells.evaluate_all("ns => ns.map(n => [n.dataset.group, Number(n.dataset.value)])"))
    codes = served.adata.obs["cell_type"].astype(str).to_numpy()
    j = served.adata.var_names.get_loc(gene)
    assert raw == {g: pytest.approx(served.x[codes == g, j].mean(), rel=1e-9) for g in ("NK cell", "Treg")}


def test_box_plots_show_the_quantiles(ui: Page, served: Served) -> None:
    gene = marker(served)
    ui.open(f"dataset=demo&gene={gene}&tab=distribution")
    stats = ["q10", "q25", "median", "q75", "q90"]
    read = "(ns, ks) => ns.map(n => [n.dataset.group, ks.map(k => Number(n.dataset[k]))])"
    shown = ui.page.locator("#distribution-chart g.box").evaluate_all(read, stats)
    api = served.api("/summary", genes=[gene], groupby="cell_type", stats=stats, version=served.version)
    assert [g for g, _ in shown] == api["groups"]
    for i, (_, quantiles) in enumerate(shown):
        assert quantiles == [api["values"][s][i][0] for s in stats]
        assert quantiles == sorted(quantiles)
    codes = served.adata.obs["cell_type"].astype(str).to_numpy()
    j = served.adata.var_names.get_loc(gene)
    medians = {g: q[2] for g, q in shown}
    top = max(medians, key=medians.__getitem__)
    assert medians[top] == pytest.approx(np.median(served.lognorm[codes == top, j]), rel=1e-5)


def test_a_version_built_with_some_views_shows_only_the_tabs_it_can_fill(ui: Page, served: Served) -> None:
    """Dataset "lean" was ingested with ``--views quantiles``: no summary (dot plot, heatmap),
    no markers; the tab asked for in the URL falls back to the first one it can draw."""
    gene = marker(served)
    ui.open(f"dataset=lean&gene={gene}&tab=dotplot")
    shown = [
        t
        for t in ("dotplot", "heatmap", "embedding", "distribution", "markers")
        if ui.page.locator(f"#tab-{t}").is_visible()
    ]
    assert shown == ["embedding", "distribution"]
    assert "tab=embedding" in ui.page.url
    ui.page.locator("#tab-distribution").click()
    ui.idle()
    medians = ui.page.locator("#distribution-chart g.box").evaluate_all(
        "ns => ns.map(n => [n.dataset.group, Number(n.dataset.median)])"
    )
    codes = served.adata.obs["cell_type"].astype(str).to_numpy()
    j = served.adata.var_names.get_loc(gene)
    assert [g for g, _ in medians] == list(served.adata.obs["cell_type"].cat.categories)
    for group, median in medians:
        assert median == pytest.approx(np.median(served.lognorm[codes == group, j]), rel=1e-5, abs=1e-6)


def test_unknown_gene_is_listed_not_drawn(ui: Page, served: Served) -> None:
    ui.open()
    box = ui.page.get_by_role("combobox", name="Add gene")
    box.fill("NOTAGENE")
    box.press("Enter")
    ui.page.locator('#gene-unknown li[data-query="NOTAGENE"]').wait_for()
    assert ui.page.locator("#gene-chips li").count() == 0
    assert ui.page.get_by_role("alert").inner_text() == ""  # not an error: a list of names not found


def test_a_dataset_without_groupings_shows_one_all_cells_row(ui: Page, served: Served) -> None:
    """A CSV ingested without obs: its synthetic grouping ``all`` is chosen, and every tab
    draws one row, ``all cells``, with the whole-dataset values."""
    x = served.plain
    lognorm = np.log1p(x / np.maximum(x.sum(axis=1, keepdims=True), 1) * 1e4)[:, 2]
    ui.open("dataset=plain&gene=Gene2")
    assert ui.page.locator("#groupby").input_value() == "all"
    mean, frac = ui.dots("Gene2")["all cells"]
    assert len(ui.dots("Gene2")) == 1
    assert mean == pytest.approx(lognorm.mean(), rel=1e-6) and frac == (lognorm != 0).mean()
    ui.open("dataset=plain&gene=Gene2&tab=heatmap&z=1")
    cells = ui.page.locator("#heatmap-chart rect.cell")
    assert cells.count() == 1 and cells.get_attribute("data-value") == "0"  # one group: z-score 0
    ui.open("dataset=plain&gene=Gene2&tab=distribution")
    boxes = ui.page.locator("#distribution-chart g.box")
    assert boxes.count() == 1 and boxes.get_attribute("data-group") == "all cells"
    assert float(boxes.get_attribute("data-median")) == pytest.approx(np.median(lognorm), rel=1e-6)


def test_scatter_coloured_by_a_category(ui: Page, served: Served) -> None:
    ui.open("dataset=demo&tab=embedding&color=donor")
    canvas = ui.page.locator("#scatter")
    assert (
        canvas.get_attribute("data-drawn") == str(N_CELLS) and canvas.get_attribute("data-color") == "donor"
    )
    assert f"{N_CELLS:,} cells, coloured by donor" in (canvas.get_attribute("aria-label") or "")
    legend = ui.page.locator("#embedding-legend li")
    categories = served.adata.obs["donor"].cat.categories.tolist()
    assert legend.evaluate_all("ns => ns.map(n => n.dataset.category)") == categories
    counts = served.adata.obs["donor"].value_counts(sort=False).tolist()
    assert [int(t.replace(",", "")) for t in legend.locator(".count").all_inner_texts()] == counts
    painted = canvas.evaluate("""c => { const g = document.createElement('canvas');
        g.width = c.width; g.height = c.height; const x = g.getContext('2d'); x.drawImage(c, 0, 0);
        const d = x.getImageData(0, 0, c.width, c.height).data; let n = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i] < 250 || d[i + 1] < 250 || d[i + 2] < 250) n++;
        return n; }""")
    assert painted > min(N_CELLS, 20_000)  # cells are discs of several pixels


def test_scatter_coloured_by_a_gene(ui: Page, served: Served) -> None:
    """The scatter coloured by a gene shows the API's values (numpy's normalized column), and
    its colour bar spans them; the embedding's CSV export carries the value of every cell."""
    assert served.api("/embedding", version=served.version)["gene_colors"] is True
    gene = marker(served)
    j = served.adata.var_names.get_loc(gene)
    api = served.api("/embedding/X_umap", color=gene, version=served.version)["color"]
    values = np.asarray(api["values"], dtype=np.float64)
    assert api["kind"] == "gene" and values.shape == (N_CELLS,)
    np.testing.assert_allclose(values, served.lognorm[:, j], rtol=1e-6, atol=1e-6)  # default layer
    ui.open(f"dataset=demo&tab=embedding&color={gene}")
    canvas = ui.page.locator("#scatter")
    assert canvas.get_attribute("data-color") == gene
    assert f"{N_CELLS:,} cells, coloured by gene {gene}" in (canvas.get_attribute("aria-label") or "")
    bar = ui.page.get_by_role("img", name=f"{gene} expression")
    assert bar.count() == 1
    ticks = [float(t) for t in bar.locator(".ticks span").all_inner_texts()]
    lo, hi = values.min(), values.max()
    assert hi > lo  # a marker: not a constant colour
    np.testing.assert_allclose(ticks, [lo, (lo + hi) / 2, hi], rtol=6e-3, atol=1e-3)  # 3 significant digits
    _, data = download(ui, "Download CSV")
    rows = list(csv.reader(io.StringIO(data.decode())))
    assert rows[0] == ["row", "x", "y", gene] and len(rows) == N_CELLS + 1
    # the CSV holds each float32 exactly (as a double); the JSON its shortest float32 form
    np.testing.assert_array_equal(np.float32([float(r[3]) for r in rows[1:]]), np.float32(values))


def test_markers_tab_lists_the_stored_markers_and_adds_a_gene(ui: Page, served: Served) -> None:
    ui.open("dataset=demo&groupby=cell_type&tab=markers")
    groups = served.adata.obs["cell_type"].cat.categories.tolist()
    options = ui.page.locator("#marker-group option").evaluate_all("ns => ns.map(n => n.value)")
    assert options == groups
    group = groups[2]
    ui.page.locator("#marker-group").select_option(group)
    ui.idle()
    api = served.api("/markers", groupby="cell_type", group=group, limit=25, version=served.version)
    rows = ui.page.locator("#markers-table tbody tr")
    shown = rows.evaluate_all("ns => ns.map(n => [n.dataset.gene, Number(n.dataset.t)])")
    assert [g for g, _ in shown] == [m["gene"] for m in api["markers"]]  # same genes, same order
    assert [t for _, t in shown] == [m["t"] for m in api["markers"]]
    assert f"mgroup={group.replace(' ', '+')}" in ui.page.url
    gene = api["markers"][0]["gene"]
    ui.page.get_by_role("button", name=f"Add {gene} to the plot").click()
    ui.idle()
    assert chips(ui) == [gene] and f"gene={gene}" in ui.page.url
    assert (
        ui.page.locator(f'#markers-table button[data-gene="{gene}"]').get_attribute("aria-pressed") == "true"
    )
    ui.page.get_by_role("tab", name="Dot plot").click()
    ui.idle()
    assert list(ui.dots(gene)) == groups  # drawn for every group


def test_scaled_input_shows_no_fraction_expressing_and_says_why(ui: Page, served: Served) -> None:
    """Scaled values (with negatives): the unit says so, every dot is full size with a note
    instead of the size key, and the markers tab says why fold changes and % are missing."""
    ui.open("dataset=scaled&gene=S0&gene=S1&groupby=cell_type")
    assert ui.page.locator("#dotplot-legend .color-bar figcaption").inner_text() == (
        "Mean expression (scaled (as given))"
    )
    note = ui.page.locator("#dotplot-legend .note.withheld")
    assert "zero does not mean 'not expressed'" in note.inner_text()
    dots = ui.page.locator("#dotplot-chart circle.dot")
    radii = dots.evaluate_all("ns => ns.map(n => Number(n.getAttribute('r')))")
    assert len(radii) == 4 and len(set(radii)) == 1 and radii[0] > 5  # all full size
    fracs = ui.page.locator("#dotplot-chart circle.dot").evaluate_all("ns => ns.map(n => n.dataset.frac)")
    assert set(fracs) == {"null"}
    ui.open("dataset=scaled&groupby=cell_type&tab=markers")
    notes = ui.page.locator("#markers-table .note.withheld")
    assert notes.evaluate_all("ns => ns.map(n => n.dataset.field)") == ["pct_in", "pct_out", "logfoldchange"]
    lfc = ui.page.locator('#markers-table .note[data-field="logfoldchange"]')
    assert "no fold change" in lfc.inner_text()
    assert ui.page.locator("#markers-table tbody tr").first.get_attribute("data-gene") == "S0"


def test_markers_of_a_one_group_grouping_show_the_servers_reason(ui: Page, served: Served) -> None:
    r = httpx.get(
        f"{served.url}/api/v1/datasets/plain/markers", params={"groupby": "all", "group": "all cells"}
    )
    assert r.status_code == 422
    ui.open("dataset=plain&tab=markers")
    note = ui.page.locator("#markers-table .note.skipped")
    assert note.inner_text() == r.json()["detail"]
    assert ui.page.get_by_role("alert").inner_text() == ""  # a note, not an error
    ui.errors = [e for e in ui.errors if "422" not in e]  # the browser logs the answer's status


def test_a_pasted_list_draws_the_known_genes_and_lists_the_unknown(ui: Page, served: Served) -> None:
    ui.open()
    ui.page.locator("summary", has_text="Paste a list").click()
    ui.page.get_by_label("Gene symbols or Ensembl IDs").fill("CD3E, ms4a1\nNOTAGENE")
    ui.page.get_by_role("button", name="Add genes").click()
    assert chips(ui, count=2) == ["CD3E", "MS4A1"]
    assert set(ui.dots("CD3E")) == set(ui.dots("MS4A1")) == set(served.adata.obs["cell_type"].cat.categories)
    unknown = ui.page.locator("#gene-unknown li")
    assert unknown.evaluate_all("ns => ns.map(n => n.dataset.query)") == ["NOTAGENE"]
    # a typo gets "did you mean", and the suggestion adds the gene; an Ensembl ID works too
    gene_id = str(served.adata.var.loc["LYZ", "gene_ids"])
    box = ui.page.get_by_role("combobox", name="Add gene")
    box.fill(f"NKG77 {gene_id.lower()}")
    box.press("Enter")
    assert chips(ui, count=3) == ["CD3E", "MS4A1", "LYZ"]
    ui.page.get_by_role("button", name="Add NKG7 instead of NKG77").click()
    assert chips(ui, count=4) == ["CD3E", "MS4A1", "LYZ", "NKG7"]
    expect(ui.page.locator('#dotplot-chart circle[data-gene="NKG7"]')).not_to_have_count(0, timeout=20_000)
    ui.page.get_by_role("button", name="Clear all genes").click()
    assert chips(ui, count=0) == [] and "gene=" not in ui.page.url
    assert "Add genes" in ui.page.locator("#dotplot-chart").inner_text()


def test_a_url_with_an_unknown_gene_still_draws_the_others(ui: Page, served: Served) -> None:
    ui.open("dataset=demo&gene=CD3E&gene=NOTAGENE&gene=ms4a1")
    assert chips(ui) == ["CD3E", "MS4A1"]
    assert len(ui.dots("CD3E")) == len(ui.dots("MS4A1")) == served.adata.obs["cell_type"].cat.categories.size
    assert ui.page.locator('#gene-unknown li[data-query="NOTAGENE"]').count() == 1
    assert ui.page.get_by_role("alert").inner_text() == ""
    assert "NOTAGENE" not in ui.page.url and "gene=MS4A1" in ui.page.url


def test_csv_export_has_the_apis_numbers(ui: Page, served: Served) -> None:
    gene = marker(served)
    ui.open(f"dataset=demo&gene={gene}&gene=CD3E")
    name, data = download(ui, "Download CSV")
    assert name == f"demo-dotplot-{served.version[:8]}.csv"
    rows = list(csv.reader(io.StringIO(data.decode())))
    assert rows[0] == ["group", "gene", "mean", "frac_expressing"]
    api = served.api("/summary", genes=[gene, "CD3E"], groupby="cell_type", version=served.version)
    expected = [
        [g, n, api["values"]["mean"][i][j], api["values"]["frac_expressing"][i][j]]
        for i, g in enumerate(api["groups"])
        for j, n in enumerate(api["genes"])
    ]
    assert [[g, n, float(m), float(f)] for g, n, m, f in rows[1:]] == expected  # exact: full precision
    ui.page.get_by_role("tab", name="Distribution").click()  # box plots: the quantiles
    ui.idle()
    _, data = download(ui, "Download CSV")
    rows = list(csv.reader(io.StringIO(data.decode())))
    stats = ["q10", "q25", "median", "q75", "q90"]
    assert rows[0] == ["group", "gene", *stats]
    api = served.api(
        "/summary", genes=[gene, "CD3E"], groupby="cell_type", stats=stats, version=served.version
    )
    assert [[float(v) for v in r[2:]] for r in rows[1:]] == [
        [api["values"][s][i][j] for s in stats] for i in range(len(api["groups"])) for j in range(2)
    ]


def test_png_and_svg_export_and_copy_link(ui: Page, served: Served) -> None:
    gene = marker(served)
    ui.open(f"dataset=demo&gene={gene}&gene=CD3E")
    n_groups = served.adata.obs["cell_type"].cat.categories.size
    name, png = download(ui, "Download PNG")
    assert name.endswith(".png") and png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5_000
    name, svg = download(ui, "Download SVG")
    root = ElementTree.fromstring(svg)
    assert name.endswith(".svg") and root.tag == "{http://www.w3.org/2000/svg}svg"
    assert len(root.findall(".//{http://www.w3.org/2000/svg}circle[@data-gene]")) == 2 * n_groups
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "Mean expression (log1p CP10k)" in texts and "Fraction of cells expressing" in texts
    ui.open("dataset=demo&tab=embedding&color=donor")
    name, png = download(ui, "Download PNG")
    assert (
        name == f"demo-embedding-X_umap-{served.version[:8]}.png"
        and png[:4] == b"\x89PNG"
        and len(png) > 5_000
    )
    _, svg = download(ui, "Download SVG")
    root = ElementTree.fromstring(svg)
    assert root.find(".//{http://www.w3.org/2000/svg}image") is not None  # points as one raster image
    assert served.adata.obs["donor"].cat.categories[0] in [
        t.text for t in root.iter("{http://www.w3.org/2000/svg}text")
    ]
    _, data = download(ui, "Download CSV")  # every cell: obs row, coordinates, colour
    rows = list(csv.reader(io.StringIO(data.decode())))
    assert rows[0] == ["row", "x", "y", "donor"] and len(rows) == N_CELLS + 1
    umap = np.asarray(served.adata.obsm["X_umap"], dtype=np.float32).astype(np.float64)
    assert np.array_equal(np.array([[float(r[1]), float(r[2])] for r in rows[1:]]), umap[:, :2])
    assert [r[3] for r in rows[1:]] == served.adata.obs["donor"].astype(str).tolist()
    ui.page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=served.url)
    ui.page.get_by_role("button", name="Copy link").click()
    ui.page.get_by_text("Link to this exact view copied.").wait_for()
    assert ui.page.evaluate("navigator.clipboard.readText()") == ui.page.url
    assert f"version={served.version}" in ui.page.url and "emb=X_umap" in ui.page.url


def test_colour_scales_name_the_layer_and_its_unit(ui: Page, served: Served) -> None:
    gene = marker(served)
    ui.open(f"dataset=demo&gene={gene}")
    bar = ui.page.locator("#dotplot-legend .color-bar figcaption")
    assert bar.inner_text() == "Mean expression (log1p CP10k)"
    ui.open(f"dataset=demo&gene={gene}&layer=input&tab=heatmap")
    assert ui.page.locator("#heatmap-legend .color-bar figcaption").inner_text() == "Mean expression (counts)"
    layers = ui.page.locator("#layer option").all_inner_texts()
    assert layers == ["default: normalized (log1p CP10k)", "input (counts)", "normalized (log1p CP10k)"]


def test_screenshots(ui: Page, served: Served, tmp_path: Path) -> None:
    """One PNG per view: into $WIDECUBE_SCREENSHOTS (``make screenshots``), else a temporary
    folder. Each is a PNG of the viewport's width, at least its height, and not blank."""
    folder = Path(SHOTS) if SHOTS else tmp_path
    codes = served.adata.obs["cell_type"].cat.codes.to_numpy()
    means = np.stack([served.x[codes == k].mean(axis=0) for k in range(codes.max() + 1)])
    top = np.argsort(-(means - means.mean(axis=0)) / (means.std(axis=0) + 1e-9), axis=1)[:, 0]
    genes = list(dict.fromkeys(str(served.adata.var_names[j]) for j in top))[:14]
    query = "dataset=demo&" + "&".join(f"gene={g}" for g in genes)
    few = "dataset=demo&" + "&".join(f"gene={g}" for g in genes[3:8])
    views = (
        ("dotplot", query + "&tab=dotplot"),
        ("heatmap", query + "&tab=heatmap&z=1"),
        ("scatter", query + "&tab=embedding&color=cell_type"),
        ("distribution", few + "&tab=distribution"),
    )
    for name, url in views:
        ui.open(url)
        path = folder / f"ui-{name}.png"
        path.unlink(missing_ok=True)
        ui.page.screenshot(path=str(path), full_page=True)
        png = path.read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR", name
        width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
        assert width == 1400 and height >= 1000, (name, width, height)  # the ui fixture's viewport
        assert len(png) > 20_000, (name, len(png))  # a drawn page; a blank one compresses to ~10 kB
