// Per-group values for the dot plot, the heatmap and the box plots, with the obs filters applied.
//
// How a filter is answered:
//   * no filter: the precomputed summary (GET /summary, a cacheable URL);
//   * "aggregate": any filter goes to the server's POST /aggregate, which re-aggregates the
//     kept cells exactly (moments and quantiles) from the gene-major view — or answers from
//     the precomputed views when the filter keeps every group whole (its `source` says which).
//     Every figure shown is the server's; nothing is re-aggregated in the browser.
//   * "groups": only for a version without the gene-major view (no /aggregate): a filter on
//     the grouping's own columns keeps or drops whole groups of the precomputed summary;
//   * "unsupported": any other filter on such a version; the filter panel disables it.

import { api } from "./api.js";

const MAX_COMBINATIONS = 1_000_000;

let features = { aggregate: false, expression: false };

/** Record which optional routes the server has (GET /api/v1/features). */
export function setFeatures(found) {
  features = { ...features, ...found };
}

/** Whether the server can re-aggregate over arbitrary filters (its /aggregate route, and
 * the gene-major view in this dataset version). */
export const hasAggregate = (detail) => features.aggregate && Boolean(detail.views && detail.views.matrix);

const columnsOf = (key) => key.split(",");

/** Filters that restrict something: a kept list that is not every category of its column. */
export function activeFilters(detail, filters) {
  const active = {};
  for (const [column, kept] of Object.entries(filters)) {
    const all = detail.obs[column]?.categories;
    if (!all) continue;
    if (kept.length < all.length || !all.every((c) => kept.includes(c))) active[column] = kept;
  }
  return active;
}

/** Numeric range filters that restrict something (a bound set on a numeric obs column). */
export function activeRanges(detail, ranges = {}) {
  const out = {};
  for (const [column, r] of Object.entries(ranges)) {
    if (detail.numeric?.[column] && (r.min !== null || r.max !== null)) out[column] = r;
  }
  return out;
}

/** Whether a state selects cells beyond categories: numeric ranges or a lasso. */
export const hasCellFilter = (detail, state) => Boolean(state.lasso) || Object.keys(activeRanges(detail, state.ranges)).length > 0;

/** The selection of a state as the API takes it: {filter (categories and ranges), lasso}. */
export function selectionOf(detail, state, { lasso = true } = {}) {
  const filter = { ...activeFilters(detail, state.filters) };
  for (const [column, r] of Object.entries(activeRanges(detail, state.ranges))) {
    filter[column] = Object.fromEntries(Object.entries(r).filter(([, v]) => v !== null));
  }
  return { filter, lasso: lasso && state.lasso ? state.lasso : null };
}

/** Whether a grouping is precomputed (else only /aggregate answers it, from the gene-major view). */
export const precomputed = (detail, groupby) => detail.groupbys.includes(groupby);

/** How the filters will be answered: {mode, key, active} (see the header of this module). */
export function plan(detail, groupby, filters, extra = false) {
  const active = activeFilters(detail, filters);
  const onTheFly = extra || !precomputed(detail, groupby);
  if (!Object.keys(active).length && !onTheFly) return { mode: "none", key: groupby, active };
  if (hasAggregate(detail)) return { mode: "aggregate", key: groupby, active };
  if (onTheFly) return { mode: "unsupported", key: groupby, active, columns: [] };
  const grouped = new Set(columnsOf(groupby));
  const others = Object.keys(active).filter((c) => !grouped.has(c));
  if (others.length === 0) return { mode: "groups", key: groupby, active };
  return { mode: "unsupported", key: groupby, active, columns: others };
}

/** Whether filtering on `column` can be answered for this grouping (for the filter panel). */
export function canFilter(detail, groupby, column) {
  const all = detail.obs[column].categories;
  return plan(detail, groupby, { [column]: all.slice(1) }).mode !== "unsupported";
}

/** Group name → {column: category} for a grouping, from the categories of its columns. */
export function groupParts(detail, key) {
  const columns = columnsOf(key);
  if (!columns.every((c) => detail.obs[c])) return null;
  let size = 1;
  for (const c of columns) size *= detail.obs[c].categories.length;
  if (size > MAX_COMBINATIONS) return null;
  let entries = [["", {}]];
  for (const [i, column] of columns.entries()) {
    const next = [];
    for (const [name, parts] of entries) {
      for (const cat of detail.obs[column].categories) {
        next.push([i === 0 ? cat : `${name}_${cat}`, { ...parts, [column]: cat }]);
      }
    }
    entries = next;
  }
  return new Map(entries);
}

const keeps = (active, parts) =>
  Object.entries(active).every(([column, kept]) => !(column in parts) || kept.includes(parts[column]));

/** {groups, genes, mean[g][j], frac[g][j], mode, source} for the state's genes, grouping and filters. */
export async function groupValues(detail, state) {
  const r = await groupStats(detail, state, ["mean", "frac_expressing"]);
  return { groups: r.groups, genes: r.genes, mean: r.values.mean, frac: r.values.frac_expressing,
    mode: r.mode, source: r.source, notes: r.notes, sizes: r.sizes, selection: r.selection };
}

/**
 * {groups, genes, values: {stat: [g][j]}, mode, source} for any statistics of /summary
 * (quantiles included), filtered: by /aggregate when the server has it (groups the filter
 * empties are left out), else by keeping whole groups of the summary.
 */
export async function groupStats(detail, state, stats) {
  const p = plan(detail, state.groupby, state.filters, hasCellFilter(detail, state));
  const { dataset, version, genes, groupby, layer } = state;
  if (p.mode === "unsupported") {
    const what = p.columns.length ? `filtering on ${p.columns.join(", ")} with this grouping`
      : "numeric filters, lassos and groupings not precomputed";
    throw new Error(`${what} need the /aggregate endpoint (gene-major view), which this dataset version does not have`);
  }
  const want = [...new Set([...stats, "n_cells"])];
  if (p.mode === "aggregate") {
    const r = await api.aggregate(dataset, version, { genes, groupby, layer, stats: want, ...selectionOf(detail, state) });
    const keep = r.values.n_cells.map((row) => row[0] > 0);
    const pick = (rows) => rows.filter((_, i) => keep[i]);
    return { groups: pick(r.groups), genes: r.genes, mode: p.mode, source: r.source, notes: r.notes ?? {},
      sizes: pick(r.values.n_cells).map((row) => row[0]), selection: selectionOf(detail, state),
      values: Object.fromEntries(stats.map((s) => [s, pick(r.values[s])])) };
  }
  const sized = Boolean(detail.views?.summary); // n_cells comes from the summary view
  const r = await api.summary(dataset, version, genes, groupby, sized ? want : stats, layer);
  const parts = p.mode === "groups" ? groupParts(detail, groupby) : null;
  const keep = r.groups.map((g) => !parts || !parts.get(g) || keeps(p.active, parts.get(g)));
  const pick = (rows) => rows.filter((_, i) => keep[i]);
  return { groups: pick(r.groups), genes: r.genes, mode: p.mode, source: "precomputed", notes: r.notes ?? {},
    sizes: sized ? pick(r.values.n_cells).map((row) => row[0]) : null, selection: { filter: p.active, lasso: null },
    values: Object.fromEntries(stats.map((s) => [s, pick(r.values[s])])) };
}
