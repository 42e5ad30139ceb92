// The application: load datasets, keep the state in the URL, and draw the active tab.
// Every request after the dataset is resolved pins its version (immutable responses).

import { api, ApiError } from "./api.js";
import { el, replace } from "./dom.js";
import { renderDotplot } from "./dotplot.js";
import { EmbeddingPanel } from "./embedding.js";
import { filterNote, renderFilters } from "./filters.js";
import { renderHeatmap } from "./heatmap.js";
import { renderBoxplot } from "./boxplot.js";
import { groupStats, groupValues, setFeatures } from "./query.js";
import { GeneSearch } from "./search.js";
import { emptyState, parseState, TABS, writeUrl } from "./state.js";

const $ = (id) => document.getElementById(id);

// A tab is available when the dataset version offers what it needs: "distribution" (box
// plots) needs the quantiles view.
const AVAILABLE = {
  dotplot: () => true,
  heatmap: () => true,
  embedding: () => true,
  distribution: (detail) => Boolean(detail.views && detail.views.quantiles),
};

let state = parseState(window.location.search);
let detail = null;
let ticket = 0;
const embedding = new EmbeddingPanel({
  canvas: $("scatter"), legend: $("embedding-legend"), keySelect: $("embedding-key"),
  colorSelect: $("embedding-color"), geneInput: $("color-gene"), geneNote: $("color-gene-note"),
});

function showError(err) {
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
  try {
    setFeatures(await api.features());
    const datasets = await api.datasets();
    if (!datasets.length) {
      setStatus("No dataset is published yet: ingest one with “widecube ingest FILE --dataset NAME”.");
      return;
    }
    replace($("dataset"), ...datasets.map((d) => el("option", { value: d.name }, d.name)));
    if (!datasets.some((d) => d.name === state.dataset)) Object.assign(state, { dataset: datasets[0].name, version: null });
    $("dataset").value = state.dataset;
    await loadDataset();
  } catch (err) {
    showError(err);
  }
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
  const versions = (await api.versions(state.dataset)).filter((v) => v.status !== "failed" && v.status !== "building");
  replace($("version"), ...versions.map((v) => el("option", { value: v.version, selected: v.version === state.version },
    `${v.version.slice(0, 8)} · ${v.status}${v.current ? " (live)" : ""} · ${new Date(v.created).toLocaleString()}`)));
  if (!detail.groupbys.includes(state.groupby)) state.groupby = detail.groupbys[0] ?? null;
  replace($("groupby"), ...detail.groupbys.map((g) => el("option", { value: g, selected: g === state.groupby }, g)));
  const layers = detail.views.summary?.layers ?? [];
  if (!layers.includes(state.layer)) state.layer = null;
  replace($("layer"), el("option", { value: "" }, "default"),
    ...layers.map((l) => el("option", { value: l, selected: l === state.layer }, l)));
  for (const column of Object.keys(state.filters)) if (!detail.obs[column]) delete state.filters[column];
  for (const tab of TABS) $(`tab-${tab}`).hidden = !AVAILABLE[tab](detail);
  if (!AVAILABLE[state.tab](detail)) state.tab = "dotplot";
  drawFilters();
  renderChips();
  await render();
}

function drawFilters() {
  renderFilters($("filter-list"), detail, state, (column, kept) => {
    if (kept === null) delete state.filters[column];
    else state.filters[column] = kept;
    drawFilters();
    render();
  });
  $("filter-note").textContent = filterNote(detail, state);
}

function renderChips() {
  replace($("gene-chips"), ...state.genes.map((gene) => el("li", { class: "chip" }, gene,
    el("button", { type: "button", "aria-label": `Remove ${gene}`, onclick: () => removeGene(gene) }, "×"))));
}

async function addGene(gene) {
  if (!detail || state.genes.includes(gene)) return;
  try {
    await api.summary(state.dataset, state.version, [gene], state.groupby, ["n_cells"]); // is it a gene?
  } catch (err) {
    return showError(err);
  }
  state.genes = [...state.genes, gene];
  renderChips();
  await render();
}

function removeGene(gene) {
  state.genes = state.genes.filter((g) => g !== gene);
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
  setStatus("Loading…");
  document.body.dataset.state = "loading";
  try {
    if (state.tab === "dotplot" || state.tab === "heatmap" || state.tab === "distribution") await drawGroups(mine);
    else if (state.tab === "embedding") {
      const chosen = await embedding.show(state, state.groupby?.split(",")[0]);
      if (mine !== ticket) return;
      Object.assign(state, chosen);
      writeUrl(state);
      setStatus(chosen.embedding ? `${chosen.embedding} of version ${state.version.slice(0, 8)}` : "");
    }
  } catch (err) {
    if (mine === ticket) {
      showError(err);
      setStatus("");
    }
  } finally {
    if (mine === ticket) document.body.dataset.state = "ready";
  }
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
  const data = tab === "distribution"
    ? await groupStats(detail, state, detail.views.quantiles.stats)
    : await groupValues(detail, state);
  if (mine !== ticket) return;
  if (!data.groups.length) return empty("No cells match the filters: widen them to see values.");
  if (tab === "dotplot") renderDotplot(holders, data, { scaled: state.scaled });
  else if (tab === "heatmap") renderHeatmap(holders, data, { zscore: state.zscore });
  else renderBoxplot(holders, data);
  holders.chart.dataset.mode = data.mode;
  holders.chart.dataset.source = data.source;
  const layer = state.layer ? `, ${state.layer} layer` : "";
  setStatus(`${data.genes.length} genes × ${data.groups.length} groups (${state.groupby}${layer}), version ${state.version.slice(0, 8)}`);
}

function wire() {
  $("dataset").addEventListener("change", (e) => {
    state = { ...emptyState(), dataset: e.target.value, tab: state.tab };
    loadDataset().catch(showError);
  });
  $("version").addEventListener("change", (e) => {
    state.version = e.target.value;
    loadDataset().catch(showError);
  });
  $("groupby").addEventListener("change", (e) => {
    state.groupby = e.target.value;
    drawFilters();
    render();
  });
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
  new GeneSearch($("gene-input"), $("gene-options"), { suggest, onPick: addGene });
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

start();
