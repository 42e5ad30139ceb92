// The Compare tab: any two sets of cells compared gene by gene on the server (POST /compare,
// exact, from the gene-major view): a group of the chosen grouping, or a lasso drawn on the
// embedding, against another group or the rest. The filters of the side panel cut both sets.
// Each row gives Welch's t, the log2 fold change, the fractions and means of both sets and
// the Benjamini-Hochberg adjusted p; clicking a gene adds it to the plotted genes.

import { api } from "./api.js";
import { el, fmt, pct, replace } from "./dom.js";
import { parseLasso } from "./state.js";

export const COMPARE_TOPS = [25, 50, 100];

/** "group:B cell" → {group}, "lasso:X_umap~…" → {lasso}; the API's cell set of a choice. */
export function cellSet(choice, groupby) {
  if (!choice || choice === "rest") return null;
  if (choice.startsWith("group:")) return { group: { groupby, group: choice.slice(6) } };
  if (choice.startsWith("lasso:")) {
    const lasso = parseLasso(choice.slice(6));
    return lasso ? { lasso } : null;
  }
  return null;
}

/** The URL form of a lasso as a Compare choice. */
export const lassoChoice = (lasso) => `lasso:${lasso.embedding}~${lasso.polygon.map((p) => p.join(",")).join(";")}`;

export class ComparePanel {
  /** @param {{aSelect, bSelect, topSelect, rankSelect, table, note, onAdd: (genes: string[]) => void}} parts */
  constructor(parts) {
    Object.assign(this, parts);
  }

  /**
   * Fill the controls from the groups ({name, n}) and draw the comparison of the state's
   * choices within `within` ({filter, lasso}); returns {a, b, answer} (answer null when
   * nothing can be compared yet).
   */
  async show(state, groups, within) {
    const names = groups.map((g) => g.name);
    let a = state.cmpA;
    if (!a || (a.startsWith("group:") && !names.includes(a.slice(6)))) a = names.length ? `group:${names[0]}` : null;
    let b = state.cmpB;
    if (b !== "rest" && (!b.startsWith("group:") || !names.includes(b.slice(6)) || b === a)) b = "rest";
    const option = (value, label, chosen) => el("option", { value, selected: value === chosen }, label);
    const groupOptions = (chosen) => groups.map((g) => option(`group:${g.name}`, `${g.name} (${g.n.toLocaleString()} cells)`, chosen));
    replace(this.aSelect, ...(a?.startsWith("lasso:") ? [option(a, "lasso selection", a)] : []), ...groupOptions(a));
    replace(this.bSelect, option("rest", "rest (all other cells)", b), ...groupOptions(b));
    replace(this.topSelect, ...COMPARE_TOPS.map((n) => el("option", { value: n, selected: n === state.ctop }, String(n))));
    const setA = cellSet(a, state.groupby);
    if (!setA) {
      replace(this.table, el("p", { class: "note" }, "Choose the cells to compare."));
      return { a, b, answer: null };
    }
    const answer = await api.compare(state.dataset, state.version, {
      a: setA, b: cellSet(b, state.groupby), within, top: state.ctop ?? 25, rank: this.rankSelect.value || "up",
      layer: state.layer,
    });
    this.draw(answer, state.genes, a, b);
    return { a, b, answer };
  }

  draw(answer, plotted, a, b) {
    const label = (choice) => (choice === "rest" ? "the rest" : choice.startsWith("lasso:") ? "the lasso selection" : choice.slice(6));
    const rows = answer.results;
    this.note.textContent = `${label(a)}: ${answer.a.cells.toLocaleString()} cells · ${label(b)}: `
      + `${answer.b.cells.toLocaleString()} cells · ${answer.genes_tested.toLocaleString()} genes tested (${answer.layer} layer)`;
    const button = (gene) => el("button", { type: "button", class: "gene-add", "data-gene": gene,
      "aria-pressed": plotted.includes(gene) ? "true" : "false", "aria-label": `Add ${gene} to the plot`,
      onclick: () => this.onAdd([gene]) }, gene);
    replace(this.table,
      el("div", { class: "options-row" }, el("button", { type: "button", class: "add-all",
        onclick: () => this.onAdd(rows.map((r) => r.gene)) }, `Add all ${rows.length} to the plot`)),
      el("table", { class: "values markers compare", "data-a-cells": String(answer.a.cells), "data-b-cells": String(answer.b.cells) },
        el("caption", {}, `Top ${rows.length} genes of ${label(a)} against ${label(b)} (Welch t; BH-adjusted p over `
          + `${answer.genes_tested.toLocaleString()} genes)`),
        el("thead", {}, el("tr", {}, ...["#", "gene", "t", "log2 fold change", "% in A", "% in B", "mean A", "mean B", "adjusted p"]
          .map((h) => el("th", { scope: "col" }, h)))),
        el("tbody", {}, ...rows.map((r, i) => el("tr", { "data-gene": r.gene, "data-t": String(r.t),
          "data-pval": String(r.pval), "data-pval-adj": String(r.pval_adj), "data-logfoldchange": String(r.logfoldchange),
          "data-mean-a": String(r.mean_a), "data-mean-b": String(r.mean_b) },
        el("td", {}, String(i + 1)), el("th", { scope: "row" }, button(r.gene)),
        el("td", {}, fmt(r.t)), el("td", {}, fmt(r.logfoldchange)), el("td", {}, pct(r.pct_a)), el("td", {}, pct(r.pct_b)),
        el("td", {}, fmt(r.mean_a)), el("td", {}, fmt(r.mean_b)), el("td", {}, fmt(r.pval_adj)))))));
  }
}
