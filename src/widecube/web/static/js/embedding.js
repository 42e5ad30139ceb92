// The embedding tab: pick an embedding (obsm key) and what colours the cells (a categorical
// or numeric obs column, or a gene when the server has the gene-major view), then draw
// every cell with the WebGL scatter and a legend.

import { api } from "./api.js";
import { category, MISSING_RGB, sequential } from "./colors.js";
import { el, extent, replace } from "./dom.js";
import { categoryKey, colorBar } from "./legend.js";
import { Scatter } from "./scatter.js";

/** 4 bytes per cell: palette colours for category codes (-1 grey), viridis for numbers. */
export function cellColors(color, n) {
  const rgba = new Uint8Array(4 * n);
  const put = (i, [r, g, b], a = 255) => rgba.set([r, g, b, a], 4 * i);
  if (!color) {
    for (let i = 0; i < n; i++) put(i, [70, 110, 160], 200);
  } else if (color.kind === "category") {
    const palette = color.categories.map((_, k) => category(k));
    for (let i = 0; i < n; i++) put(i, color.codes[i] >= 0 ? palette[color.codes[i]] : MISSING_RGB, 220);
  } else {
    const [lo, hi] = extent(color.values);
    const span = hi > lo ? hi - lo : 1;
    for (let i = 0; i < n; i++) put(i, Number.isFinite(color.values[i]) ? sequential((color.values[i] - lo) / span) : MISSING_RGB);
  }
  return rgba;
}

function counts(codes, k) {
  const out = new Array(k).fill(0);
  for (const c of codes) if (c >= 0) out[c]++;
  return out;
}

export class EmbeddingPanel {
  constructor({ canvas, legend, keySelect, colorSelect, geneInput, geneNote }) {
    Object.assign(this, { canvas, legend, keySelect, colorSelect, geneInput, geneNote });
    this.scatter = null;
    this.shownCoords = null;
  }

  /** What the version offers: embeddings and colourings (cached per dataset version). */
  async options(state) {
    const id = `${state.dataset}@${state.version}`;
    if (this.optionsFor !== id) {
      this.list = await api.embeddings(state.dataset, state.version);
      this.optionsFor = id;
    }
    return this.list;
  }

  /** Fill the controls and draw; returns the (possibly defaulted) key and colour. */
  async show(state, groupbyColumn, geneUnit = null) {
    const list = await this.options(state);
    const keys = Object.keys(list.embeddings);
    if (!keys.length) {
      replace(this.legend, el("p", { class: "empty" }, "This dataset version has no embedding (obsm)."));
      return { embedding: null, color: state.color };
    }
    const key = keys.includes(state.embedding) ? state.embedding : keys.includes("X_umap") ? "X_umap" : keys[0];
    const columns = Object.keys(list.colors);
    const defaultColor = columns.includes(groupbyColumn) ? groupbyColumn : columns.find((c) => list.colors[c] === "category");
    const color = state.color || defaultColor || null;
    this.fillControls(list, keys, key, columns, color);
    const data = await api.embedding(state.dataset, state.version, key, color);
    this.draw(data, `${state.dataset}@${state.version}/${key}`, geneUnit);
    return { embedding: key, color };
  }

  fillControls(list, keys, key, columns, color) {
    replace(this.keySelect, ...keys.map((k) => el("option", { value: k, selected: k === key }, k)));
    const geneColor = color && !columns.includes(color);
    replace(this.colorSelect,
      el("option", { value: "" }, "none"),
      ...columns.map((c) => el("option", { value: c, selected: c === color }, `${c} (${list.colors[c]})`)),
      geneColor ? el("option", { value: color, selected: true }, `gene ${color}`) : null);
    this.geneInput.disabled = !list.gene_colors;
    this.geneNote.hidden = list.gene_colors;
  }

  draw(data, coordsId, geneUnit = null) {
    this.data = data; // for the CSV export
    this.scatter ||= new Scatter(this.canvas);
    const rgba = cellColors(data.color, data.n);
    if (this.shownCoords === coordsId) this.scatter.setColors(rgba);
    else this.scatter.setData(data.x, data.y, rgba);
    this.shownCoords = coordsId;
    this.scatter.paint();
    const c = data.color;
    this.canvas.dataset.points = String(data.n);
    this.canvas.dataset.color = c ? c.name : "";
    this.canvas.setAttribute("aria-label", `Embedding of ${data.n.toLocaleString()} cells`
      + (c ? `, coloured by ${c.kind === "gene" ? "gene " : ""}${c.name}` : "")
      + ". Drag or arrow keys to pan, wheel or +/- to zoom, 0 to reset.");
    if (!c) replace(this.legend);
    else if (c.kind === "category") {
      replace(this.legend, categoryKey({ title: c.name, categories: c.categories, color: category,
        counts: counts(c.codes, c.categories.length) }));
    } else {
      const [lo, hi] = extent(c.values);
      replace(this.legend, colorBar({ title: c.kind === "gene" ? `${c.name} expression` : c.name,
        min: lo, max: hi, scale: sequential, unit: c.kind === "gene" ? geneUnit : null }));
    }
  }
}
