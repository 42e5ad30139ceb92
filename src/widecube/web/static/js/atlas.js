// "Where is my gene": the same genes, grouped the same way, across every dataset the browser's
// filters select (POST /atlas/expression). Datasets are an extra facet: one dot plot per
// dataset, and a first one pooled over all of them (from the summed sums and counts). Genes a
// dataset lacks are named under its plot.

import { api } from "./api.js";
import { el, replace } from "./dom.js";
import { renderDotplot } from "./dotplot.js";

const split = (text) => text.split(/[\s,;]+/).filter(Boolean);

export class AtlasPanel {
  /** `nodes`: {genes, by, layer, run, out, status}; `filters()` → the browser's {q, facet: [values]}. */
  constructor(nodes, { filters, onError }) {
    Object.assign(this, nodes);
    this.filters = filters;
    this.onError = onError;
    this.run.addEventListener("click", () => this.query());
    this.genes.addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); this.query(); } });
  }

  async query() {
    const genes = split(this.genes.value);
    if (!genes.length) { this.status.textContent = "Type one or more genes (symbols or Ensembl IDs)."; return; }
    const body = { genes, by: this.by.value.trim() || "cell_type", layer: this.layer.value, filter: this.filters() };
    this.status.textContent = "Querying…";
    let found;
    try {
      found = await api.atlas(body);
    } catch (err) {
      this.status.textContent = "";
      return this.onError(err);
    }
    const n = found.datasets.length;
    this.status.textContent = `${n} dataset${n === 1 ? "" : "s"}`
      + (found.skipped.length ? `; ${found.skipped.length} could not answer` : "");
    const panels = [];
    if (n) panels.push(this.facet("All datasets (pooled)", found.pooled, found.genes, "pooled"));
    for (const d of found.datasets) panels.push(this.facet(`${d.dataset} (${d.version.slice(0, 8)})`, d, found.genes, d.dataset,
      d.absent.length ? `Absent here: ${d.absent.join(", ")}` : null));
    if (found.skipped.length) panels.push(el("ul", { class: "note skipped", "aria-label": "Datasets that could not answer" },
      ...found.skipped.map((s) => el("li", {}, s.reason))));
    replace(this.out, ...panels);
  }

  facet(title, part, genes, key, note = null) {
    const holders = { chart: el("div", { class: "chart" }), legend: el("div", { class: "legends" }), table: el("div") };
    renderDotplot(holders, { groups: part.groups, genes, mean: part.values.mean, frac: part.values.frac_expressing },
      { scaled: false, unit: this.layer.value === "input" ? "values as given" : "log1p CP10k" });
    return el("section", { class: "atlas-facet", "data-atlas": key, "aria-label": title },
      el("h3", {}, title), note ? el("p", { class: "note absent" }, note) : null,
      el("div", { class: "figure" }, holders.chart, holders.legend),
      el("details", { class: "table-toggle" }, el("summary", {}, "Values as a table"), holders.table));
  }
}
