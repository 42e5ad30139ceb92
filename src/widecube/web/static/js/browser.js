// The dataset browser the page opens on: full-text search over the datasets' metadata, facet
// checkboxes with counts (organism, tissue, assay, disease, tag) and one card per hit; "Open"
// shows the dataset in the explorer below. The server finds and counts only the datasets this
// visitor may read (GET /search).

import { api } from "./api.js";
import { el, replace } from "./dom.js";

const FACETS = ["organism", "tissue", "assay", "disease", "tag"];
const LABELS = { organism: "Organism", tissue: "Tissue", assay: "Assay", disease: "Disease", tag: "Tag" };

export class DatasetBrowser {
  /** `nodes`: {input, facets, results, count}; `onOpen(name)` opens a dataset. */
  constructor(nodes, { onOpen, onError }) {
    Object.assign(this, nodes);
    this.onOpen = onOpen;
    this.onError = onError;
    this.selected = Object.fromEntries(FACETS.map((f) => [f, new Set()]));
    this.ticket = 0;
    let timer = null;
    this.input.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => this.refresh(), 200);
    });
    this.input.form?.addEventListener("submit", (e) => { e.preventDefault(); this.refresh(); });
  }

  /** What the browser selects, as a cross-dataset query's filter ({q?, facet: [values]}). */
  filters() {
    const out = {};
    const q = this.input.value.trim();
    if (q) out.q = q;
    for (const f of FACETS) if (this.selected[f].size) out[f] = [...this.selected[f]];
    return out;
  }

  /** Ask the server again (after typing, a facet click, a sign-in). */
  async refresh() {
    const mine = ++this.ticket;
    const filters = Object.fromEntries(FACETS.map((f) => [f, [...this.selected[f]]]));
    let found;
    try {
      found = await api.search(this.input.value.trim(), filters);
    } catch (err) {
      return this.onError(err);
    }
    if (mine !== this.ticket) return; // a newer search is under way
    this.count.textContent = `${found.total} dataset${found.total === 1 ? "" : "s"}`;
    this.drawFacets(found.facets);
    replace(this.results, ...found.datasets.map((d) => this.card(d)));
  }

  drawFacets(facets) {
    const groups = FACETS.filter((f) => Object.keys(facets[f] ?? {}).length || this.selected[f].size).map((facet) => {
      const counts = { ...Object.fromEntries([...this.selected[facet]].map((v) => [v, 0])), ...facets[facet] };
      return el("fieldset", { class: "facet", "data-facet": facet }, el("legend", {}, LABELS[facet]),
        ...Object.entries(counts).map(([value, n]) => el("label", { class: "facet-value" },
          el("input", { type: "checkbox", value, checked: this.selected[facet].has(value),
            "data-facet": facet, onchange: (e) => this.toggle(facet, value, e.target.checked) }),
          ` ${value} `, el("span", { class: "count" }, `(${n})`))));
    });
    replace(this.facets, ...groups);
  }

  toggle(facet, value, on) {
    if (on) this.selected[facet].add(value);
    else this.selected[facet].delete(value);
    this.refresh();
  }

  card(d) {
    const m = d.metadata ?? {};
    const line = (label, values) => (values && values.length
      ? el("div", { class: "meta-line" }, el("span", { class: "meta-label" }, `${label}: `), values.join(", ")) : null);
    return el("li", { class: "dataset-card", "data-dataset": d.name },
      el("h3", {}, m.title ?? d.name),
      el("div", { class: "note" }, `${d.name} · ${d.n_cells?.toLocaleString() ?? "?"} cells · ${d.n_genes?.toLocaleString() ?? "?"} genes`),
      m.description ? el("p", { class: "description" }, m.description) : null,
      line("Organism", m.organism), line("Tissue", m.tissue), line("Assay", m.assay), line("Disease", m.disease),
      line("Tags", m.tags),
      m.doi ? el("div", { class: "meta-line" }, el("span", { class: "meta-label" }, "DOI: "), m.doi) : null,
      el("button", { type: "button", class: "open", "aria-label": `Open ${d.name}`, onclick: () => this.onOpen(d.name) }, "Open"));
  }
}
