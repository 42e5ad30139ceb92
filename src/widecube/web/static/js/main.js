// The application: sign in (when the server asks who is there), load datasets, keep the
// state in the URL, and draw the active tab.
// Every request after the dataset is resolved pins its version (immutable responses); with
// release=NAME in the URL every dataset request names that release too, the dataset picker
// lists its datasets and the version picker shows the version it names, read-only.

import { api, ApiError, setRelease } from "./api.js";
import { el, replace } from "./dom.js";
import { renderDotplot } from "./dotplot.js";
import { EmbeddingPanel } from "./embedding.js";
import { filterNote, renderCellFilters, renderFilters } from "./filters.js";
import { renderHeatmap } from "./heatmap.js";
import { activeFilters, groupStats, groupValues, hasAggregate, precomputed, selectionOf, setFeatures } from "./query.js";
import { ComparePanel, lassoChoice } from "./compare.js";
import { drawDendrogram } from "./dendro.js";
import { renderViolins } from "./violin.js";
import { GeneSearch } from "./search.js";
import { emptyState, parseState, TABS, writeUrl } from "./state.js";
import { MarkersPanel } from "./markers.js";
import { csvBlob, figureSvg, groupRows, pngBlob, rasterSvg, save, svgBlob } from "./export.js";
import { defaultLayer, layersOf, layerUnit } from "./layers.js";
import { SessionControl, takeToken } from "./session.js";
import { DatasetBrowser } from "./browser.js";
import { AtlasPanel } from "./atlas.js";

const $ = (id) => document.getElementById(id);
const linkToken = takeToken(); // first: a sign-in link's secret leaves the address bar at once

// A tab is available when the dataset version offers what it needs (the detail lists only
// the views the version was built with; `widecube ingest --views` may leave some out): the
// dot plot and the heatmap need the summary view, "distribution" (box plots) the quantiles.
const hasView = (detail, name) => Boolean(detail.views && detail.views[name]);
const AVAILABLE = {
  dotplot: (detail) => hasView(detail, "summary"),
  heatmap: (detail) => hasView(detail, "summary"),
  embedding: () => true,
  distribution: (detail) => hasView(detail, "quantiles"),
  markers: (detail) => hasView(detail, "markers"),
  compare: (detail) => hasAggregate(detail),
};
const MAX_VIOLIN_GENES = 32; // POST /violin's limit: more genes get box plots only
// The names of a pasted list: separated by commas, semicolons, spaces or new lines.
const splitNames = (text) => text.split(/[\s,;]+/).filter(Boolean);

let state = parseState(window.location.search);
let detail = null;
let releases = []; // GET /releases: [{name, datasets: {dataset: version}}], newest first
let ticket = 0;
let pending = 0; // drawings and gene lookups under way: the page says "loading" until none is left

/** Count one piece of work in (+1) or out (-1); body[data-state] tells tests and assistive
 * tools whether what is shown answers the last action. */
function busy(step) {
  pending += step;
  document.body.dataset.state = pending ? "loading" : "ready";
}

/** Run `work()` counted as pending (a sign-in or sign-out reloads the datasets: until that
 * is done, what is shown is the previous visitor's); its error goes to the message line. */
async function counted(work) {
  busy(+1);
  try {
    await work();
  } catch (err) {
    showError(err);
  } finally {
    busy(-1);
  }
}
let drawn = null; // the numbers the active tab shows, for the CSV export: {tab, header, rows | () => rows}
const markers = new MarkersPanel({
  groupSelect: $("marker-group"), topSelect: $("marker-top"), table: $("markers-table"), note: $("marker-note"),
  onAdd: (genes) => plotGenes(genes),
});
const session = new SessionControl({
  box: $("session"), user: $("session-user"), open: $("sign-in-open"), signOut: $("sign-out"),
  form: $("sign-in-form"), input: $("sign-in-token"), cancel: $("sign-in-cancel"), error: $("sign-in-error"),
}, { onChange: () => counted(() => { browser.refresh(); return loadDatasets(); }), onError: (err) => showError(err) });
const browser = new DatasetBrowser({
  input: $("browser-q"), facets: $("browser-facets"), results: $("browser-results"), count: $("browser-count"),
}, { onOpen: (name) => openDataset(name), onError: (err) => showError(err) });
new AtlasPanel({
  genes: $("atlas-genes"), by: $("atlas-by"), layer: $("atlas-layer"), run: $("atlas-run"),
  out: $("atlas-out"), status: $("atlas-status"),
}, { filters: () => browser.filters(), onError: (err) => showError(err) });

/** Show dataset `name` (a browser card's "Open") in the explorer. */
function openDataset(name) {
  state = { ...emptyState(), release: state.release, dataset: name, tab: state.tab };
  $("dataset").value = name;
  replace($("gene-unknown"));
  loadDataset().then(() => $("controls").scrollIntoView({ behavior: "smooth" })).catch(showError);
}
const embedding = new EmbeddingPanel({
  canvas: $("scatter"), legend: $("embedding-legend"), keySelect: $("embedding-key"),
  colorSelect: $("embedding-color"), geneInput: $("color-gene"), geneNote: $("color-gene-note"),
  xLabel: $("embedding-xlabel"), yLabel: $("embedding-ylabel"), lassoButton: $("lasso-mode"),
  resetButton: $("reset-view"), lassoBar: $("lasso-actions"),
  onLassoFilter: (lasso) => { state.lasso = lasso; drawFilters(); render(); },
  onLassoCompare: (lasso) => { Object.assign(state, { cmpA: lassoChoice(lasso), cmpB: "rest" }); selectTab("compare"); },
});
const compare = new ComparePanel({
  aSelect: $("compare-a"), bSelect: $("compare-b"), topSelect: $("compare-top"), rankSelect: $("compare-rank"),
  table: $("compare-table"), note: $("compare-note"), onAdd: (genes) => plotGenes(genes),
});

function showError(err) {
  if (err instanceof ApiError && err.status === 401) { // the session ended meanwhile (token revoked, expired)
    counted(() => session.start(null).then(loadDatasets).catch(() => {}));
  }
  const text = err instanceof ApiError || err instanceof Error ? err.message : String(err);
  replace($("message"), el("p", { class: "error" }, text));
}

function clearMessage() {
  replace($("message"));
}

function setStatus(text) {
  $("status").textContent = text;
}

async function start() {
  wire();
  await counted(async () => {
    await session.start(linkToken);
    setFeatures(await api.features());
    browser.refresh(); // the page opens on the dataset browser
    await loadReleases();
    await loadDatasets();
  });
}

/** The releases this visitor may read, in the release picker (shown when there is any, or
 * when the URL names one); the page's release pins every dataset request from now on. */
async function loadReleases() {
  setRelease(state.release);
  releases = await api.releases();
  const names = releases.map((r) => r.name);
  if (state.release && !names.includes(state.release)) names.unshift(state.release); // the server will say why
  $("release-box").hidden = names.length === 0;
  replace($("release"), el("option", { value: "" }, "none: live versions"),
    ...names.map((name) => el("option", { value: name, selected: name === state.release }, name)));
}

/** The datasets this visitor may see (again after a sign-in or sign-out): keep the one shown
 * if it is still listed, else show the first, or say why there is none. With a release, the
 * datasets it names. */
async function loadDatasets() {
  const pinned = releases.find((r) => r.name === state.release);
  const datasets = (await api.datasets()).filter((d) => !pinned || d.name in pinned.datasets);
  const none = !datasets.length;
  $("layout").hidden = none;
  $("no-dataset").hidden = !none;
  replace($("dataset"), ...datasets.map((d) => el("option", { value: d.name }, d.name)));
  if (none) {
    ticket++; // a drawing under way is not shown
    Object.assign(state, { ...emptyState(), release: state.release, tab: state.tab });
    detail = null;
    for (const id of ["version", "groupby", "layer", "gene-chips", "gene-unknown"]) replace($(id));
    writeUrl(state);
    $("no-dataset").textContent = session.anonymous
      ? "No dataset is open to visitors: sign in with an API token to see the datasets you may read."
      : "No dataset is published yet: ingest one with “widecube ingest FILE --dataset NAME”.";
    return;
  }
  const listed = datasets.some((d) => d.name === state.dataset);
  if (listed && detail !== null) { // still listed, and drawn
    $("dataset").value = state.dataset;
    return;
  }
  if (!listed) {
    // a link's unknown dataset: the first one, with the link's genes; one gone since: a fresh start
    state = detail === null ? { ...state, dataset: datasets[0].name, version: null }
      : { ...emptyState(), release: state.release, dataset: datasets[0].name, tab: state.tab };
    replace($("gene-unknown"));
  }
  $("dataset").value = state.dataset;
  await loadDataset();
}

async function loadDataset() {
  try {
    detail = await api.dataset(state.dataset, state.version);
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 404 && state.version)) throw err;
    showError(`${err.message}; showing the live version instead.`);
    detail = await api.dataset(state.dataset, null);
  }
  state.version = detail.version;
  $("version").disabled = Boolean(state.release);
  if (state.release) { // the version the release names, whatever is live: read-only
    replace($("version"), el("option", { value: state.version, selected: true },
      `${state.version.slice(0, 8)} · release ${state.release}`));
  } else {
    const versions = (await api.versions(state.dataset)).filter((v) => v.status !== "failed" && v.status !== "building");
    replace($("version"), ...versions.map((v) => el("option", { value: v.version, selected: v.version === state.version },
      `${v.version.slice(0, 8)} · ${v.status}${v.current ? " (live)" : ""} · ${new Date(v.created).toLocaleString()}`)));
  }
  fillGroupby();
  const layers = layersOf(detail);
  if (!layers.includes(state.layer)) state.layer = null;
  replace($("layer"), el("option", { value: "" }, `default: ${defaultLayer(detail) ?? "input"} (${layerUnit(detail, null)})`),
    ...layers.map((l) => el("option", { value: l, selected: l === state.layer }, `${l} (${layerUnit(detail, l)})`)));
  for (const column of Object.keys(state.filters)) if (!detail.obs[column]) delete state.filters[column];
  for (const column of Object.keys(state.ranges)) if (!detail.numeric?.[column]) delete state.ranges[column];
  for (const tab of TABS) $(`tab-${tab}`).hidden = !AVAILABLE[tab](detail);
  if (!AVAILABLE[state.tab](detail)) state.tab = TABS.find((t) => AVAILABLE[t](detail));
  drawFilters();
  if (state.genes.length) { // a shared URL's genes: draw the known ones, list the unknown
    const found = await api.resolveGenes(state.dataset, state.version, state.genes);
    state.genes = found.genes;
    showUnknown(found.unknown);
  }
  renderChips();
  await render();
}

/** "Group by": any categorical obs column, and a second one for pairs, when the version can
 * group on the fly (gene-major view); else the precomputed groupings only. */
function fillGroupby() {
  const live = hasAggregate(detail);
  const columns = live ? Object.keys(detail.obs) : [];
  const firsts = [...new Set([...detail.groupbys.filter((g) => live ? !g.includes(",") : true), ...columns])];
  const parts = (state.groupby ?? "").split(",");
  const valid = state.groupby && (precomputed(detail, state.groupby)
    || (live && parts.length <= 2 && parts.every((c) => columns.includes(c)) && parts[0] !== parts[1]));
  if (!valid) state.groupby = detail.groupbys[0] ?? columns[0] ?? null;
  const [first, second] = live ? state.groupby.split(",") : [state.groupby, undefined];
  replace($("groupby"), ...firsts.map((g) => el("option", { value: g, selected: g === first }, g)));
  replace($("groupby2"), el("option", { value: "" }, "—"),
    ...columns.filter((c) => c !== first).map((c) => el("option", { value: c, selected: c === second }, c)));
  $("groupby2").disabled = !live || !columns.includes(first);
}

function setGroupby() {
  const second = $("groupby2").value;
  state.groupby = second && second !== $("groupby").value ? `${$("groupby").value},${second}` : $("groupby").value;
  fillGroupby();
  drawFilters();
  render();
}

function drawFilters() {
  renderFilters($("filter-list"), detail, state, (column, kept) => {
    if (kept === null) delete state.filters[column];
    else state.filters[column] = kept;
    drawFilters();
    render();
  });
  renderCellFilters($("cell-filters"), detail, state, {
    onRange: (column, range) => {
      if (range === null) delete state.ranges[column];
      else state.ranges[column] = range;
      drawFilters();
      render();
    },
    onLasso: () => {
      state.lasso = null;
      drawFilters();
      render();
    },
  });
  $("filter-note").textContent = filterNote(detail, state);
}

function renderChips() {
  replace($("gene-chips"), ...state.genes.map((gene) => el("li", { class: "chip" }, gene,
    el("button", { type: "button", "aria-label": `Remove ${gene}`, onclick: () => removeGene(gene) }, "×"))));
}

/** Typed or pasted names: the server resolves them (any case, Ensembl IDs); the known ones
 * are plotted, the unknown ones listed with "did you mean" suggestions. */
async function addGenes(names) {
  if (!detail || !names.length) return;
  busy(+1); // busy from the pick, not only from the drawing that follows the lookup
  try {
    const found = await api.resolveGenes(state.dataset, state.version, names);
    showUnknown(found.unknown);
    await plotGenes(found.genes);
  } catch (err) {
    showError(err);
  } finally {
    busy(-1);
  }
}

/** Add canonical gene names (from the server) to the plotted ones. */
async function plotGenes(genes) {
  const added = genes.filter((g) => !state.genes.includes(g));
  if (!added.length) return;
  state.genes = [...state.genes, ...added];
  renderChips();
  await render();
}

function showUnknown(unknown) {
  const box = $("gene-unknown");
  if (!unknown.length) return replace(box);
  const suggestion = (u, gene) => el("button", { type: "button", "data-gene": gene, "aria-label": `Add ${gene} instead of ${u.query}`,
    onclick: () => {
      u.suggestions = [];
      box.querySelector(`li[data-query="${CSS.escape(u.query)}"]`)?.remove();
      if (!box.querySelector("li")) replace(box);
      plotGenes([gene]);
    } }, gene);
  replace(box, el("span", {}, `Not found (${unknown.length}):`),
    el("ul", { "aria-label": "Genes not found" }, ...unknown.map((u) => el("li", { "data-query": u.query },
      el("span", { class: "query" }, u.query),
      u.suggestions.length
        ? el("span", {}, "did you mean ", ...u.suggestions.flatMap((g, i) => [i ? ", " : null, suggestion(u, g)].filter(Boolean)), "?")
        : el("span", { class: "note" }, "no similar gene")))),
    el("button", { type: "button", "aria-label": "Dismiss the genes not found", onclick: () => replace(box) }, "×"));
}

function removeGene(gene) {
  state.genes = state.genes.filter((g) => g !== gene);
  renderChips();
  render();
}

function clearGenes() {
  state.genes = [];
  replace($("gene-unknown"));
  renderChips();
  render();
}

function selectTab(tab) {
  state.tab = tab;
  render();
}

/** Draw the active tab; returns once drawn (or failed, with the message shown). */
async function render() {
  writeUrl(state);
  const mine = ++ticket;
  for (const tab of TABS) {
    const on = tab === state.tab;
    $(`tab-${tab}`).setAttribute("aria-selected", String(on));
    $(`tab-${tab}`).tabIndex = on ? 0 : -1;
    $(`panel-${tab}`).hidden = !on;
  }
  clearMessage();
  drawn = null;
  $("export-png").disabled = $("export-svg").disabled = state.tab === "markers" || state.tab === "compare"; // tables: CSV only
  setStatus("Loading…");
  busy(+1);
  try {
    if (state.tab === "dotplot" || state.tab === "heatmap" || state.tab === "distribution") await drawGroups(mine);
    else if (state.tab === "embedding") {
      const selection = selectionOf(detail, state);
      const filtered = Object.keys(selection.filter).length > 0 || selection.lasso;
      const kept = filtered ? await api.cells(state.dataset, state.version, selection) : null;
      if (mine !== ticket) return;
      const chosen = await embedding.show(state, state.groupby?.split(",")[0], layerUnit(detail, null), kept);
      if (mine !== ticket) return;
      Object.assign(state, chosen);
      writeUrl(state);
      setStatus(chosen.embedding ? `${chosen.embedding} of version ${state.version.slice(0, 8)}` : "");
      const d = embedding.data;
      if (chosen.embedding && d) {
        drawn = { tab: "embedding", header: ["row", "x", "y", ...(d.color ? [d.color.name] : [])],
          rows: () => Array.from({ length: d.n }, (_, i) => [i + 1, d.x[i], d.y[i], ...(d.color ? [colorValue(d.color, i)] : [])]) };
      }
    } else if (state.tab === "compare") {
      await drawCompare(mine);
    } else if (state.tab === "markers" && !precomputed(detail, state.groupby)) {
      replace($("markers-table"), el("p", { class: "note skipped" }, `Markers are stored for the groupings ingest `
        + `computed (${detail.groupbys.join(", ")}); compare groups of ${state.groupby} in the Compare tab.`));
      setStatus("");
    } else if (state.tab === "markers") {
      const shown = await markers.show(detail, state, { filtered: Object.keys(activeFilters(detail, state.filters)).length > 0 });
      if (mine !== ticket) return;
      state.mgroup = shown.group;
      writeUrl(state);
      if (shown.rows) {
        drawn = { tab: "markers", header: ["rank", "gene", "t", "logfoldchange", "pct_in", "pct_out", "pval", "pval_adj"],
          rows: shown.rows.map((r, i) => [i + 1, r.gene, r.t, r.logfoldchange, r.pct_in, r.pct_out, r.pval, r.pval_adj]) };
        setStatus(`Top ${shown.rows.length} markers of ${shown.group} against the rest (${state.groupby}, ${shown.layer} layer), `
          + `version ${state.version.slice(0, 8)}`);
      } else setStatus("");
    }
  } catch (err) {
    if (mine === ticket) {
      showError(err);
      setStatus("");
    }
  } finally {
    busy(-1);
  }
}

/** The Compare tab: the groups of the grouping (with their sizes under the filters), then
 * the server's comparison of the two chosen sets within the filters. */
async function drawCompare(mine) {
  const gene = state.genes[0] ?? (await api.genes(state.dataset, state.version, "", 1)).genes[0];
  const sizes = await groupStats(detail, { ...state, genes: [gene] }, ["n_cells"]);
  if (mine !== ticket) return;
  const groups = sizes.groups.map((g, i) => ({ name: g, n: sizes.sizes[i] }));
  const shown = await compare.show(state, groups, selectionOf(detail, state));
  if (mine !== ticket) return;
  Object.assign(state, { cmpA: shown.a, cmpB: shown.b });
  writeUrl(state);
  const r = shown.answer;
  if (!r) return setStatus("");
  drawn = { tab: "compare", header: ["rank", "gene", "t", "logfoldchange", "pct_a", "pct_b", "mean_a", "mean_b", "pval", "pval_adj"],
    rows: r.results.map((g, i) => [i + 1, g.gene, g.t, g.logfoldchange, g.pct_a, g.pct_b, g.mean_a, g.mean_b, g.pval, g.pval_adj]) };
  setStatus(`${r.results.length} genes of ${r.a.cells.toLocaleString()} cells against ${r.b.cells.toLocaleString()} cells `
    + `(${r.layer} layer), version ${state.version.slice(0, 8)}`);
}

/** Rows of `data` in dendrogram order (the server's, over the same cells and genes). */
async function dendrogramOrder(data) {
  const tree = await api.dendrogram(state.dataset, state.version, { genes: data.genes, groupby: state.groupby,
    layer: state.layer, ...selectionOf(detail, state) });
  const at = tree.ordered.map((g) => data.groups.indexOf(g));
  const pick = (rows) => rows && at.map((i) => rows[i]);
  return { tree, data: { ...data, groups: tree.ordered, mean: pick(data.mean), frac: pick(data.frac), sizes: pick(data.sizes) } };
}

async function drawGroups(mine) {
  const tab = state.tab;
  const holders = { chart: $(`${tab}-chart`), legend: $(`${tab}-legend`), table: $(`${tab}-table`) };
  const empty = (text) => {
    Object.values(holders).forEach((h) => replace(h));
    replace(holders.chart, el("p", { class: "empty" }, text));
    setStatus(text);
  };
  if (!state.genes.length) return empty("Add genes with the search box above to draw the plot.");
  let data = tab === "distribution"
    ? await groupStats(detail, state, detail.views.quantiles.stats)
    : await groupValues(detail, state);
  if (mine !== ticket) return;
  if (!data.groups.length) return empty("No cells match the filters: widen them to see values.");
  const unit = layerUnit(detail, state.layer);
  let tree = null;
  const ordered = tab !== "distribution" && state.dendro && data.genes.length > 1 && data.groups.length > 1;
  if (ordered) ({ tree, data } = await dendrogramOrder(data));
  const violins = tab === "distribution" && hasAggregate(detail) && data.genes.length <= MAX_VIOLIN_GENES
    ? await api.violin(state.dataset, state.version, { genes: data.genes, groupby: state.groupby, layer: state.layer,
      bins: 40, ...selectionOf(detail, state) })
    : null;
  if (mine !== ticket) return;
  if (tab === "dotplot") renderDotplot(holders, data, { scaled: state.scaled, unit });
  else if (tab === "heatmap") renderHeatmap(holders, data, { zscore: state.zscore, unit });
  else renderViolins(holders, data, violins, { unit });
  if (tree) {
    const root = holders.chart.querySelector("svg");
    const rows = [...root.querySelectorAll("g.row-labels text")].map((t) => Number(t.getAttribute("y")));
    drawDendrogram(root, tree, { x0: Number(root.getAttribute("width")), y: (i) => rows[i] });
  }
  drawn = tab === "distribution"
    ? { tab, header: ["group", "gene", ...detail.views.quantiles.stats], rows: groupRows(data, detail.views.quantiles.stats) }
    : { tab, header: ["group", "gene", "mean", "frac_expressing"],
      rows: groupRows({ ...data, values: { mean: data.mean, frac: data.frac } }, ["mean", "frac"]) };
  if (tab === "heatmap" && state.zscore) {
    const z = holders.chart.querySelectorAll("rect.cell");
    drawn.header.push("zscore");
    drawn.rows.forEach((row, k) => row.push(Number(z[k].dataset.value)));
  }
  holders.chart.dataset.mode = data.mode;
  holders.chart.dataset.source = data.source;
  const layer = state.layer ? `, ${state.layer} layer` : "";
  setStatus(`${data.genes.length} genes × ${data.groups.length} groups (${state.groupby}${layer}), version ${state.version.slice(0, 8)}`);
}

function wire() {
  // Enter in a field must not submit the form (and reload the page); no inline handler: the
  // Content-Security-Policy allows scripts from /static only
  $("controls").addEventListener("submit", (e) => e.preventDefault());
  $("dataset").addEventListener("change", (e) => {
    state = { ...emptyState(), release: state.release, dataset: e.target.value, tab: state.tab };
    replace($("gene-unknown"));
    loadDataset().catch(showError);
  });
  $("release").addEventListener("change", (e) => {
    state = { ...state, release: e.target.value || null, version: null }; // the same view, another version
    setRelease(state.release);
    detail = null; // reload the dataset (or the release's first) at the release's version
    replace($("gene-unknown"));
    loadDatasets().catch(showError);
  });
  $("version").addEventListener("change", (e) => {
    state.version = e.target.value;
    loadDataset().catch(showError);
  });
  $("groupby").addEventListener("change", setGroupby);
  $("groupby2").addEventListener("change", setGroupby);
  for (const box of document.querySelectorAll(".dendro-toggle")) {
    box.checked = state.dendro;
    box.addEventListener("change", (e) => {
      state.dendro = e.target.checked;
      for (const other of document.querySelectorAll(".dendro-toggle")) other.checked = state.dendro;
      render();
    });
  }
  $("compare-a").addEventListener("change", (e) => { state.cmpA = e.target.value; render(); });
  $("compare-b").addEventListener("change", (e) => { state.cmpB = e.target.value; render(); });
  $("compare-top").addEventListener("change", (e) => { state.ctop = Number(e.target.value); render(); });
  $("compare-rank").addEventListener("change", () => render());
  $("layer").addEventListener("change", (e) => {
    state.layer = e.target.value || null;
    render();
  });
  $("scaled").addEventListener("change", (e) => { state.scaled = e.target.checked; render(); });
  $("zscore").addEventListener("change", (e) => { state.zscore = e.target.checked; render(); });
  $("scaled").checked = state.scaled;
  $("zscore").checked = state.zscore;
  $("embedding-key").addEventListener("change", (e) => { state.embedding = e.target.value; render(); });
  $("embedding-color").addEventListener("change", (e) => { state.color = e.target.value || null; render(); });
  const suggest = (prefix) => api.genes(state.dataset, state.version, prefix).then((r) => r.genes);
  new GeneSearch($("gene-input"), $("gene-options"), { suggest, onPick: (text) => addGenes(splitNames(text)) });
  $("gene-input").addEventListener("paste", (e) => { // a pasted list goes in whole (an input drops new lines)
    const text = e.clipboardData?.getData("text") ?? "";
    if (!/[\s,;]/.test(text.trim())) return;
    e.preventDefault();
    addGenes(splitNames(text));
  });
  $("gene-paste-add").addEventListener("click", () => {
    const names = splitNames($("gene-paste").value);
    $("gene-paste").value = "";
    $("gene-paste").closest("details").open = false;
    addGenes(names);
  });
  $("clear-genes").addEventListener("click", clearGenes);
  $("marker-group").addEventListener("change", (e) => { state.mgroup = e.target.value; render(); });
  $("marker-top").addEventListener("change", (e) => { state.mtop = Number(e.target.value); render(); });
  $("export-png").addEventListener("click", () => exportFigure("png"));
  $("export-svg").addEventListener("click", () => exportFigure("svg"));
  $("export-csv").addEventListener("click", exportCsv);
  $("copy-link").addEventListener("click", copyLink);
  new GeneSearch($("color-gene"), $("color-gene-options"), { suggest, onPick: (gene) => {
    state.color = gene;
    render();
  } });
  const tabs = $("tabs");
  tabs.addEventListener("click", (e) => {
    const tab = e.target.closest("[role=tab]");
    if (tab) selectTab(tab.dataset.tab);
  });
  tabs.addEventListener("keydown", (e) => {
    const shown = TABS.filter((t) => !$(`tab-${t}`).hidden);
    const step = { ArrowRight: 1, ArrowLeft: -1 }[e.key];
    if (!step) return;
    const next = shown[(shown.indexOf(state.tab) + step + shown.length) % shown.length];
    selectTab(next);
    $(`tab-${next}`).focus();
    e.preventDefault();
  });
}

// -- export ---------------------------------------------------------------------------

function colorValue(color, i) {
  if (color.kind === "category") return color.codes[i] >= 0 ? color.categories[color.codes[i]] : null;
  return color.values[i];
}

function fileName(ext) {
  const extra = state.tab === "markers" ? `-${state.mgroup}` : state.tab === "embedding" ? `-${state.embedding}` : "";
  return `${state.dataset}-${state.tab}${extra}-${state.version.slice(0, 8)}.${ext}`.replace(/[^\w.-]+/g, "_");
}

function exportNote(text) {
  $("export-note").textContent = text;
}

async function exportFigure(kind) {
  const title = `${state.dataset} · ${$(`tab-${state.tab}`).textContent} · ${state.groupby ?? ""} · `
    + `${state.layer ?? defaultLayer(detail)} (${layerUnit(detail, state.layer)}) · version ${state.version.slice(0, 8)}`;
  let plot;
  if (state.tab === "embedding") {
    const canvas = $("scatter");
    embedding.scatter?.paint(); // the drawing buffer, now (preserveDrawingBuffer keeps it)
    plot = rasterSvg(canvas, canvas.clientWidth, canvas.clientHeight);
  } else {
    plot = $(`${state.tab}-chart`)?.querySelector("svg");
  }
  if (!plot) return exportNote("Nothing drawn to export.");
  const figure = figureSvg(plot, $(`${state.tab}-legend`), title);
  try {
    save(kind === "svg" ? svgBlob(figure) : await pngBlob(figure), fileName(kind));
    exportNote("");
  } catch (err) {
    showError(err);
  }
}

function exportCsv() {
  if (!drawn || drawn.tab !== state.tab) return exportNote("No numbers drawn to export.");
  const rows = typeof drawn.rows === "function" ? drawn.rows() : drawn.rows; // the embedding's: built on demand
  save(csvBlob(drawn.header, rows), fileName("csv"));
  exportNote("");
}

async function copyLink() {
  writeUrl(state);
  const link = window.location.href;
  try {
    await navigator.clipboard.writeText(link);
    exportNote("Link to this exact view copied.");
  } catch {
    window.prompt("Copy the link to this view:", link); // no clipboard access (plain http, permissions)
  }
}

start();
