// The Markers tab: the stored top marker genes of one group of the chosen grouping (one group
// against all other cells, ranked by Welch t; GET /markers), with t, log fold change, the
// percentages of cells expressing in the group and in the rest, and the BH-adjusted p-value.
// Clicking a gene adds it to the plotted genes. A grouping whose markers ingest skipped
// (fewer than two groups) gets the server's message as a note, not as an error.

import { api, ApiError } from "./api.js";
import { el, fmt, pct, replace } from "./dom.js";
import { MARKER_TOPS } from "./state.js";

const FIELD_NAMES = { logfoldchange: "Log fold change", pct_in: "% in group", pct_out: "% in rest" };

export const MARKER_COLUMNS = ["gene", "t", "logfoldchange", "pct_in", "pct_out", "pval", "pval_adj"];

export class MarkersPanel {
  /** @param {{groupSelect, topSelect, table, note, onAdd: (genes: string[]) => void}} parts */
  constructor({ groupSelect, topSelect, table, note, onAdd }) {
    Object.assign(this, { groupSelect, topSelect, table, note, onAdd });
    this.groupsFor = null;
    this.shown = null;
  }

  /** Groups of the grouping with their sizes (from /summary's n_cells, cached per version). */
  async groups(state) {
    const id = `${state.dataset}@${state.version}/${state.groupby}`;
    if (this.groupsFor !== id) {
      const gene = state.genes[0] ?? (await api.genes(state.dataset, state.version, "", 1)).genes[0];
      const r = await api.summary(state.dataset, state.version, [gene], state.groupby, ["n_cells"]);
      this.list = r.groups.map((g, i) => ({ name: g, n: r.values.n_cells[i][0] }));
      this.groupsFor = id;
    }
    return this.list;
  }

  /**
   * Draw the markers of `state.mgroup` (default: the first group); returns {group, rows,
   * layer} of what is shown (rows null when the grouping has no stored markers).
   */
  async show(detail, state, { filtered }) {
    const groups = await this.groups(state);
    const group = groups.some((g) => g.name === state.mgroup) ? state.mgroup : groups[0]?.name ?? null;
    replace(this.groupSelect, ...groups.map((g) => el("option", { value: g.name, selected: g.name === group },
      `${g.name} (${g.n.toLocaleString()} cells)`)));
    replace(this.topSelect, ...MARKER_TOPS.map((n) => el("option", { value: n, selected: n === state.mtop }, String(n))));
    this.note.textContent = filtered
      ? "Stored markers compare each group with all other cells of the version: the filters do not apply here."
      : "";
    let answer;
    try {
      answer = await api.markers(state.dataset, state.version, state.groupby, group, state.mtop, state.layer);
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 422)) throw err;
      replace(this.table, el("p", { class: "note skipped" }, err.message)); // e.g. a one-group grouping
      this.shown = null;
      return { group, rows: null, layer: null };
    }
    this.shown = answer.markers;
    this.draw(answer, state.genes);
    return { group, rows: answer.markers, layer: answer.layer };
  }

  /** The table; genes already plotted are marked (aria-pressed). */
  draw(answer, plotted) {
    const rows = answer.markers;
    const button = (gene) => el("button", { type: "button", class: "gene-add", "data-gene": gene,
      "aria-pressed": plotted.includes(gene) ? "true" : "false", "aria-label": `Add ${gene} to the plot`,
      onclick: () => this.onAdd([gene]) }, gene);
    const notes = Object.entries(answer.notes ?? {}); // fields the layer's kind withholds, and why
    replace(this.table,
      ...notes.map(([field, why]) => el("p", { class: "note withheld", "data-field": field },
        `${FIELD_NAMES[field] ?? field}: ${why}.`)),
      el("div", { class: "options-row" }, el("button", { type: "button", class: "add-all",
        onclick: () => this.onAdd(rows.map((r) => r.gene)) }, `Add all ${rows.length} to the plot`)),
      el("table", { class: "values markers" },
        el("caption", {}, `Top ${rows.length} marker genes of ${answer.group} against all other cells `
          + `(${answer.groupby}, ${answer.layer} layer${answer.unit ? `, ${answer.unit}` : ""}; ranked by Welch t)`),
        el("thead", {}, el("tr", {}, ...["#", "gene", "t", "log fold change", "% in group", "% in rest", "adjusted p"]
          .map((h) => el("th", { scope: "col" }, h)))),
        el("tbody", {}, ...rows.map((r, i) => el("tr", { "data-gene": r.gene, "data-t": String(r.t),
          "data-logfoldchange": String(r.logfoldchange), "data-pval-adj": String(r.pval_adj) },
        el("td", {}, String(i + 1)), el("th", { scope: "row" }, button(r.gene)),
        el("td", {}, fmt(r.t)), el("td", {}, fmt(r.logfoldchange)), el("td", {}, pct(r.pct_in)),
        el("td", {}, pct(r.pct_out)), el("td", {}, fmt(r.pval_adj)))))));
  }
}
