// The embedding tab: pick an embedding (obsm key) and what colours the cells (a categorical
// or numeric obs column, or a gene when the server has the gene-major view), then draw
// every cell with the scatter (scatter.js: WebGL on a GPU, else the CPU) and a legend. The
// side panel's filters apply: cells they drop are drawn faint (the server says which cells a
// selection keeps: POST /cells). The legend hides or isolates categories; hovering a cell
// shows its id and categories (GET /obs/{index}); the lasso draws a polygon that becomes a filter or a comparison.

import { api } from "./api.js";
import { category, MISSING_RGB, sequential } from "./colors.js";
import { el, extent, replace } from "./dom.js";
import { categoryKey, colorBar } from "./legend.js";
import { Scatter } from "./scatter.js";

const FAINT = [200, 204, 212];
const MAX_LASSO_POINTS = 200;
const SEQUENTIAL_LEVELS = 1024; // a numeric colour is read from a table of this many steps

/** [r, g, b] and an alpha as the 4 bytes r, g, b, a of one little-endian 32-bit word. */
const word = ([r, g, b], a) => ((a << 24) | (b << 16) | (g << 8) | r) >>> 0;

/** 4 bytes per cell: palette colours for category codes (-1 grey), viridis for numbers;
 * cells outside `kept` (a 0/1 byte per cell, or null) faint, hidden categories transparent.
 * Written a cell at a time as one 32-bit word, from a table of the words there can be. */
export function cellColors(color, n, { kept = null, hidden = new Set() } = {}) {
  const rgba = new Uint8Array(4 * n);
  const words = new Uint32Array(rgba.buffer);
  if (!color) {
    words.fill(word([70, 110, 160], 200));
  } else if (color.kind === "category") {
    // slot k + 1 holds code k's word; slot 0 the missing code (-1)
    const table = Uint32Array.from([-1, ...color.categories.keys()],
      (k) => word(k >= 0 ? category(k) : MISSING_RGB, hidden.has(k) ? 0 : 220));
    const codes = color.codes;
    for (let i = 0; i < n; i++) words[i] = table[codes[i] + 1];
  } else {
    const [lo, hi] = extent(color.values);
    const levels = SEQUENTIAL_LEVELS - 1;
    const step = hi > lo ? levels / (hi - lo) : 0;
    const table = Uint32Array.from({ length: SEQUENTIAL_LEVELS }, (_, k) => word(sequential(k / levels), 255));
    const missing = word(MISSING_RGB, 255);
    const values = color.values;
    for (let i = 0; i < n; i++) {
      const v = values[i];
      words[i] = Number.isFinite(v) ? table[Math.round((v - lo) * step)] : missing;
    }
  }
  if (kept) {
    const faint = word(FAINT, 70);
    for (let i = 0; i < n; i++) if (!kept[i] && words[i] >>> 24) words[i] = faint;
  }
  return rgba;
}

function counts(codes, k, kept) {
  const out = new Array(k).fill(0);
  for (let i = 0; i < codes.length; i++) {
    const c = codes[i];
    if (c >= 0 && (!kept || kept[i])) out[c]++;
  }
  return out;
}

/** A lasso path in data coordinates: at most MAX_LASSO_POINTS points, 6 significant digits
 * (what the URL keeps, so that a reload selects the very same cells). */
export function simplify(path) {
  const step = Math.max(1, Math.ceil(path.length / MAX_LASSO_POINTS));
  return path.filter((_, i) => i % step === 0).map((p) => p.map((v) => Number(v.toPrecision(6))));
}

export class EmbeddingPanel {
  constructor(parts) {
    Object.assign(this, parts); // canvas, legend, keySelect, colorSelect, geneInput, geneNote, xLabel, yLabel,
    // lassoButton, resetButton, lassoBar, onLassoFilter, onLassoCompare
    this.scatter = null;
    this.shownCoords = null;
    this.hidden = new Set();
    this.hiddenFor = null;
    this.cellCache = new Map();
    this.resetButton.addEventListener("click", () => this.scatter?.resetView());
    this.lassoButton.addEventListener("click", () => this.setLasso(this.lassoButton.getAttribute("aria-pressed") !== "true"));
  }

  setLasso(on) {
    this.lassoButton.setAttribute("aria-pressed", String(on));
    this.scatter?.setMode(on ? "lasso" : "pan");
    replace(this.lassoBar);
  }

  /** What the version offers: embeddings and colourings (cached per dataset version). */
  async options(state) {
    const id = `${state.dataset}@${state.version}`;
    if (this.optionsFor !== id) {
      this.list = await api.embeddings(state.dataset, state.version);
      this.optionsFor = id;
      this.cellCache.clear();
    }
    return this.list;
  }

  /** Fill the controls and draw; `kept` lists the obs positions the filters keep (null: all).
   * Returns the (possibly defaulted) key and colour. */
  async show(state, groupbyColumn, geneUnit = null, kept = null) {
    this.state = state;
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
    const name = key.replace(/^X_/, "").toUpperCase();
    this.xLabel.textContent = `${name} 1`;
    this.yLabel.textContent = `${name} 2`;
    this.key = key;
    this.kept = null;
    if (kept) {
      this.kept = new Uint8Array(data.n);
      for (const i of kept) this.kept[i] = 1;
    }
    const hiddenFor = `${state.dataset}@${state.version}/${color}`;
    if (this.hiddenFor !== hiddenFor) [this.hidden, this.hiddenFor] = [new Set(), hiddenFor];
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
    this.geneUnit = geneUnit;
    if (!this.scatter) {
      this.scatter = new Scatter(this.canvas);
      this.scatter.onHover = (i, event) => this.hover(i, event);
      this.scatter.onLasso = (path) => this.lassoDone(path);
      this.setLasso(false);
    }
    const rgba = cellColors(data.color, data.n, { kept: this.kept, hidden: this.hidden });
    if (this.shownCoords === coordsId) this.scatter.setColors(rgba);
    else this.scatter.setData(data.x, data.y, rgba);
    this.shownCoords = coordsId;
    this.scatter.paint();
    let visible = 0;
    for (let i = 3; i < rgba.length; i += 4) if (rgba[i] && (!this.kept || this.kept[i >> 2])) visible++;
    const c = data.color;
    Object.assign(this.canvas.dataset, { points: String(data.n), color: c ? c.name : "", visible: String(visible),
      kept: String(this.kept ? this.kept.reduce((a, b) => a + b, 0) : data.n) });
    this.canvas.setAttribute("aria-label", `Embedding of ${data.n.toLocaleString()} cells`
      + (c ? `, coloured by ${c.kind === "gene" ? "gene " : ""}${c.name}` : "")
      + (this.kept ? `, ${Number(this.canvas.dataset.kept).toLocaleString()} kept by the filters` : "")
      + ". Drag or arrow keys to pan, wheel or +/- to zoom, 0 to reset.");
    if (!c) replace(this.legend);
    else if (c.kind === "category") this.drawKey(c);
    else {
      const [lo, hi] = extent(c.values);
      replace(this.legend, colorBar({ title: c.kind === "gene" ? `${c.name} expression` : c.name,
        min: lo, max: hi, scale: sequential, unit: c.kind === "gene" ? geneUnit : null }));
    }
  }

  /** The category key, with a hide/show toggle and an "only" button per category. */
  drawKey(c) {
    const redraw = () => this.draw(this.data, this.shownCoords, this.geneUnit);
    const actions = (name, i) => [
      el("button", { type: "button", class: "toggle", "aria-pressed": String(!this.hidden.has(i)),
        "aria-label": `${this.hidden.has(i) ? "Show" : "Hide"} ${name}`,
        onclick: () => { this.hidden.has(i) ? this.hidden.delete(i) : this.hidden.add(i); redraw(); } },
      this.hidden.has(i) ? "show" : "hide"),
      el("button", { type: "button", class: "only", "aria-label": `Show only ${name}`,
        onclick: () => { this.hidden = new Set(c.categories.map((_, k) => k).filter((k) => k !== i)); redraw(); } }, "only"),
    ];
    const header = this.hidden.size
      ? el("button", { type: "button", class: "show-all", onclick: () => { this.hidden.clear(); redraw(); } }, "show all")
      : null;
    replace(this.legend, categoryKey({ title: c.name, categories: c.categories, color: category,
      counts: counts(c.codes, c.categories.length, this.kept), actions, header }));
    for (const k of this.hidden) this.legend.querySelectorAll("li")[k]?.classList.add("hidden");
  }

  /** Show the hovered cell's id and categories in the shared tooltip (fetched once per cell). */
  hover(i, event) {
    const tip = document.getElementById("tooltip");
    clearTimeout(this.hoverTimer);
    if (i === null) {
      tip.hidden = true;
      delete this.canvas.dataset.hover;
      return;
    }
    this.canvas.dataset.hover = String(i);
    const place = () => {
      tip.style.left = `${event.clientX + 14}px`;
      tip.style.top = `${event.clientY + 14}px`;
    };
    this.hoverTimer = setTimeout(async () => {
      const { dataset, version } = this.state;
      const id = `${dataset}@${version}/${i}`;
      if (!this.cellCache.has(id)) this.cellCache.set(id, api.cell(dataset, version, i).catch(() => null));
      const cell = await this.cellCache.get(id);
      if (!cell || this.canvas.dataset.hover !== String(i)) return;
      const categorical = Object.keys(this.list.colors).filter((col) => this.list.colors[col] === "category");
      tip.textContent = [`cell ${cell.id}`, ...categorical.map((col) => `${col}: ${cell.obs[col] ?? "(missing)"}`)].join("\n");
      tip.dataset.cell = cell.id;
      tip.hidden = false;
      place();
    }, 60);
  }

  /** A lasso was drawn: count its cells on the server, then offer a filter or a comparison. */
  async lassoDone(path) {
    const lasso = { embedding: this.key, polygon: simplify(path) };
    const { dataset, version } = this.state;
    let inside;
    try {
      inside = await api.cells(dataset, version, { lasso });
    } catch (err) {
      replace(this.lassoBar, el("span", { class: "error-line" }, err.message));
      return;
    }
    const clear = () => { this.scatter.clearLasso(); replace(this.lassoBar); };
    replace(this.lassoBar,
      el("span", { class: "lasso-count", "data-cells": String(inside.length) }, `${inside.length.toLocaleString()} cells in the lasso`),
      el("button", { type: "button", onclick: () => { clear(); this.setLasso(false); this.onLassoFilter(lasso); } }, "Filter to these cells"),
      el("button", { type: "button", onclick: () => { clear(); this.setLasso(false); this.onLassoCompare(lasso); } }, "Compare with the rest"),
      el("button", { type: "button", onclick: clear }, "Clear"));
  }
}
