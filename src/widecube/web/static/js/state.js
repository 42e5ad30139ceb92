// The UI state and its URL encoding, so that any view can be shared and a reload restores it.
//
//   ?release=atlas-1                   (every dataset at the version a release names; read-only)
//   &dataset=pbmc&version=3f2a…&groupby=cell_type&layer=normalized&gene=CD3E&gene=MS4A1
//    &f.donor=D1&f.donor=D2&tab=dotplot&z=1&scale=1&emb=X_umap&color=cell_type
//    &mgroup=B%20cell&mtop=25          (the Markers tab's group and number of genes)
//    &r.n_genes_by_counts=500:          (a numeric range filter: min:max, either side empty)
//    &lasso=X_umap~1.5,2;3,2.5;2,4      (a lasso on an embedding kept as a filter)
//    &dendro=1&ca=group:B%20cell&cb=rest (groups in dendrogram order; the Compare tab's sets)
//
// Repeated keys carry lists (genes, and the kept categories of each filtered obs column
// `f.<column>`), so names need no delimiter of their own.

export const TABS = ["dotplot", "heatmap", "embedding", "distribution", "markers", "compare"];
export const MARKER_TOPS = [10, 25, 50, 100];

/** A fresh state: nothing chosen yet. */
export function emptyState() {
  return {
    release: null, dataset: null, version: null, groupby: null, layer: null, genes: [], filters: {},
    tab: "dotplot", zscore: false, scaled: false, embedding: null, color: null, mgroup: null, mtop: 25,
    ranges: {}, lasso: null, dendro: false, cmpA: null, cmpB: "rest", ctop: 25,
  };
}

/** The state encoded in a query string (unknown keys ignored). */
export function parseState(search) {
  const params = new URLSearchParams(search);
  const state = emptyState();
  state.release = params.get("release");
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
  for (const [key, value] of params) {
    if (!key.startsWith("r.") || key.length <= 2) continue;
    const range = parseRange(value);
    if (range) state.ranges[key.slice(2)] = range;
  }
  state.lasso = parseLasso(params.get("lasso"));
  state.dendro = params.get("dendro") === "1";
  state.cmpA = params.get("ca");
  state.cmpB = params.get("cb") || "rest";
  const ctop = Number(params.get("ctop"));
  if ([25, 50, 100].includes(ctop)) state.ctop = ctop;
  return state;
}

/** The query string of a state (stable key order, empty parts left out). */
export function encodeState(state) {
  const params = new URLSearchParams();
  const put = (key, value) => value !== null && value !== undefined && value !== "" && params.append(key, value);
  put("release", state.release);
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
  for (const [column, range] of Object.entries(state.ranges)) put(`r.${column}`, `${range.min ?? ""}:${range.max ?? ""}`);
  if (state.lasso) {
    put("lasso", `${state.lasso.embedding}~${state.lasso.polygon.map((p) => p.map((v) => +v.toPrecision(6)).join(",")).join(";")}`);
  }
  if (state.dendro) put("dendro", "1");
  put("ca", state.cmpA);
  if (state.cmpB !== "rest") put("cb", state.cmpB);
  if (state.ctop !== 25) put("ctop", state.ctop);
  return `?${params.toString()}`;
}

/** Replace the page URL by the state's (no new history entry per click). */
export function writeUrl(state) {
  const search = encodeState(state);
  if (search !== window.location.search) history.replaceState(null, "", search);
}

/** "500:" → {min: 500, max: null}; null when neither side is a number. */
export function parseRange(text) {
  const [lo, hi] = (text ?? "").split(":");
  const num = (v) => (v === undefined || v.trim() === "" || !Number.isFinite(Number(v)) ? null : Number(v));
  const range = { min: num(lo), max: num(hi) };
  return range.min === null && range.max === null ? null : range;
}

/** "X_umap~1,2;3,4;5,6" → {embedding, polygon: [[1, 2], …]} (at least 3 finite points), else null. */
export function parseLasso(text) {
  if (!text || !text.includes("~")) return null;
  const at = text.lastIndexOf("~");
  const polygon = text.slice(at + 1).split(";").map((p) => p.split(",").map(Number));
  if (polygon.length < 3 || !polygon.every((p) => p.length === 2 && p.every(Number.isFinite))) return null;
  return { embedding: text.slice(0, at), polygon };
}

function unique(values) {
  return [...new Set(values)];
}
