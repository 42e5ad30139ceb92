// The UI state and its URL encoding, so that any view can be shared and a reload restores it.
//
//   ?dataset=pbmc&version=3f2a…&groupby=cell_type&layer=normalized&gene=CD3E&gene=MS4A1
//    &f.donor=D1&f.donor=D2&tab=dotplot&z=1&scale=1&emb=X_umap&color=cell_type
//    &mgroup=B%20cell&mtop=25          (the Markers tab's group and number of genes)
//
// Repeated keys carry lists (genes, and the kept categories of each filtered obs column
// `f.<column>`), so names need no delimiter of their own.

export const TABS = ["dotplot", "heatmap", "embedding", "distribution", "markers"];
export const MARKER_TOPS = [10, 25, 50, 100];

/** A fresh state: nothing chosen yet. */
export function emptyState() {
  return {
    dataset: null, version: null, groupby: null, layer: null, genes: [], filters: {},
    tab: "dotplot", zscore: false, scaled: false, embedding: null, color: null, mgroup: null, mtop: 25,
  };
}

/** The state encoded in a query string (unknown keys ignored). */
export function parseState(search) {
  const params = new URLSearchParams(search);
  const state = emptyState();
  state.dataset = params.get("dataset");
  state.version = params.get("version");
  state.groupby = params.get("groupby");
  state.layer = params.get("layer");
  state.genes = unique(params.getAll("gene").filter(Boolean));
  for (const [key, value] of params) {
    if (!key.startsWith("f.") || key.length <= 2) continue;
    const kept = (state.filters[key.slice(2)] ||= []);
    if (value !== "") kept.push(value); // a lone empty value encodes "none kept"
  }
  const tab = params.get("tab");
  if (TABS.includes(tab)) state.tab = tab;
  state.zscore = params.get("z") === "1";
  state.scaled = params.get("scale") === "1";
  state.embedding = params.get("emb");
  state.color = params.get("color");
  state.mgroup = params.get("mgroup");
  const top = Number(params.get("mtop"));
  if (MARKER_TOPS.includes(top)) state.mtop = top;
  return state;
}

/** The query string of a state (stable key order, empty parts left out). */
export function encodeState(state) {
  const params = new URLSearchParams();
  const put = (key, value) => value !== null && value !== undefined && value !== "" && params.append(key, value);
  put("dataset", state.dataset);
  put("version", state.version);
  put("groupby", state.groupby);
  put("layer", state.layer);
  for (const gene of state.genes) put("gene", gene);
  for (const [column, kept] of Object.entries(state.filters)) {
    if (kept.length === 0) params.append(`f.${column}`, "");
    for (const v of kept) params.append(`f.${column}`, v);
  }
  put("tab", state.tab);
  if (state.zscore) put("z", "1");
  if (state.scaled) put("scale", "1");
  put("emb", state.embedding);
  put("color", state.color);
  put("mgroup", state.mgroup);
  if (state.mtop !== 25) put("mtop", state.mtop);
  return `?${params.toString()}`;
}

/** Replace the page URL by the state's (no new history entry per click). */
export function writeUrl(state) {
  const search = encodeState(state);
  if (search !== window.location.search) history.replaceState(null, "", search);
}

function unique(values) {
  return [...new Set(values)];
}
