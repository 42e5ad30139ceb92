// The filter panel: one group of checkboxes per categorical obs column ("keep cells whose
// column is one of the checked categories"), a min/max pair per numeric obs column
// (n_genes_by_counts > 500), and the lasso kept as a filter. Every change re-queries the
// server's /aggregate (see query.js); on a version without the gene-major view, columns
// whose filter cannot be answered for the current grouping are shown disabled, with the
// reason, and numeric filters are not offered.

import { el, replace } from "./dom.js";
import { canFilter, hasAggregate, hasCellFilter, plan } from "./query.js";

const MAX_SHOWN = 300;

/** Describe how the current filters are answered, for the note under the panel. */
export function filterNote(detail, state) {
  const p = plan(detail, state.groupby, state.filters, hasCellFilter(detail, state));
  if (p.mode === "none") return "No filter: every cell counts.";
  if (p.mode === "aggregate") return "Re-aggregated exactly on the server (/aggregate) over the kept cells.";
  if (p.mode === "groups") return "Filters on the grouping's own columns keep or drop whole groups (exact).";
  return `Filtering on ${p.columns.join(", ") || "numbers or a lasso"} needs the server's /aggregate endpoint.`;
}

/**
 * Draw the panel into `container`; `onChange(column, kept)` gets the kept categories
 * (null when every category is kept again, i.e. no filter on that column).
 */
export function renderFilters(container, detail, state, onChange) {
  const columns = Object.keys(detail.obs);
  if (!columns.length) return replace(container, el("p", { class: "empty" }, "No categorical obs columns to filter on."));
  const blocks = columns.map((column) => {
    const { categories, counts } = detail.obs[column];
    const kept = state.filters[column] ?? categories;
    const supported = canFilter(detail, state.groupby, column);
    const id = `filter-${column.replace(/[^A-Za-z0-9_-]/g, "_")}`;
    const set = (values) => onChange(column, values.length === categories.length ? null : values);
    const hidden = kept.filter((c) => categories.indexOf(c) >= MAX_SHOWN); // kept, beyond the shown boxes
    const boxes = categories.slice(0, MAX_SHOWN).map((cat, i) => el("label", { class: "check" },
      el("input", { type: "checkbox", value: cat, checked: kept.includes(cat), disabled: !supported,
        "data-column": column, onchange: () => set([...checkedValues(group), ...hidden]) }),
      ` ${cat} `, el("span", { class: "count" }, counts[i].toLocaleString())));
    const group = el("div", { role: "group", "aria-labelledby": `${id}-label`, id, class: "checks" }, ...boxes);
    return el("details", { class: "filter", open: column in state.filters },
      el("summary", { id: `${id}-label` }, `${column} `,
        el("span", { class: "count" }, `${kept.length} of ${categories.length}`)),
      supported ? null : el("p", { class: "note" }, hasAggregate(detail)
        ? "Not available." : "Needs the /aggregate endpoint (gene-major view) for this grouping."),
      el("div", { class: "filter-actions" },
        el("button", { type: "button", disabled: !supported, onclick: () => set(categories.slice()) }, "all"),
        el("button", { type: "button", disabled: !supported, onclick: () => set([]) }, "none")),
      group,
      categories.length > MAX_SHOWN ? el("p", { class: "note" }, `first ${MAX_SHOWN} of ${categories.length} shown`) : null);
  });
  replace(container, ...blocks);
}

/**
 * The numeric range filters and the lasso into `container`; `onRange(column, {min, max} | null)`
 * and `onLasso(null)` (the lasso removed) report changes.
 */
export function renderCellFilters(container, detail, state, { onRange, onLasso }) {
  if (!hasAggregate(detail)) return replace(container);
  const columns = Object.keys(detail.numeric ?? {});
  const blocks = columns.map((column) => {
    const { min, max } = detail.numeric[column];
    const range = state.ranges[column] ?? { min: null, max: null };
    const id = `range-${column.replace(/[^A-Za-z0-9_-]/g, "_")}`;
    const input = (side, bound) => el("input", { type: "number", step: "any", id: `${id}-${side}`, "data-column": column,
      "data-side": side, value: range[side] ?? "", placeholder: bound === null ? "" : String(+bound.toPrecision(6)),
      "aria-label": `${column} ${side === "min" ? "at least" : "at most"}`,
      onchange: (e) => {
        const value = e.target.value.trim() === "" ? null : Number(e.target.value);
        const next = { ...range, [side]: Number.isFinite(value) ? value : null };
        onRange(column, next.min === null && next.max === null ? null : next);
      } });
    return el("details", { class: "filter numeric", open: column in state.ranges },
      el("summary", {}, `${column} `, el("span", { class: "count" }, column in state.ranges
        ? `${range.min ?? "…"} – ${range.max ?? "…"}` : "any")),
      el("div", { class: "range" }, input("min", min), el("span", {}, "to"), input("max", max)));
  });
  const lasso = state.lasso ? el("p", { class: "lasso-filter" }, `Lasso on ${state.lasso.embedding} `
    + `(${state.lasso.polygon.length} points) `,
  el("button", { type: "button", "aria-label": "Remove the lasso filter", onclick: () => onLasso(null) }, "remove")) : null;
  replace(container, lasso, columns.length ? el("h3", {}, "Numeric") : null, ...blocks);
}

function checkedValues(group) {
  return [...group.querySelectorAll("input:checked")].map((box) => box.value);
}
