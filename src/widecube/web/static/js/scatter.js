// The embedding scatter: the points, pan and zoom, hover and the lasso. The points are drawn
// by one of two painters behind one interface (setPositions, setColors, paint): WebGL when
// the browser has it on a GPU (points_gl.js), else the CPU straight into pixels
// (points_cpu.js), since a software WebGL takes over a second a frame at a million points.
// `localStorage["widecube.renderer"] = "webgl" | "cpu"` overrides the choice; the canvas's
// `data-renderer` says which draws.
// Drag or use the arrow keys to pan, the wheel or +/- to zoom, 0 to reset. In lasso mode a
// drag draws a polygon (on a 2-d canvas laid over the points) and hands it over in the
// embedding's own coordinates. Hovering finds the nearest visible point through a uniform
// grid over the points (built once per data set: a lookup costs a few cells, not a scan).

import { RasterPoints } from "./points_cpu.js";
import { GLPoints, hardwareWebGL } from "./points_gl.js";

/** The painter for `canvas`: the override in localStorage, else WebGL on a GPU, else the CPU. */
function painter(canvas) {
  let wanted = null;
  try {
    wanted = window.localStorage.getItem("widecube.renderer");
  } catch {
    // storage refused (a sandboxed frame, privacy settings): choose as usual
  }
  if (wanted === "cpu" || (wanted !== "webgl" && !hardwareWebGL())) return new RasterPoints(canvas);
  return new GLPoints(canvas);
}

export class Scatter {
  /** @param {HTMLCanvasElement} canvas */
  constructor(canvas) {
    this.canvas = canvas;
    this.points = painter(canvas);
    this.points.onSettled = () => this.painted(true);
    canvas.dataset.renderer = this.points.kind;
    Object.assign(canvas.dataset, { frames: "0", full: "0" });
    this.n = 0;
    this.view = { zoom: 1, x: 0, y: 0 };
    this.mode = "pan";
    this.onLasso = null; // (polygon in data coordinates) => void
    this.onHover = null; // (index | null, event) => void
    this.overlay = canvas.parentElement?.querySelector("canvas.overlay") ?? null;
    this.bindControls();
    new ResizeObserver(() => this.draw()).observe(canvas);
  }

  /** Points at (x[i], y[i]), fitted to the canvas; `rgba` is 4 bytes per point. */
  setData(x, y, rgba) {
    const n = x.length;
    let [x0, x1, y0, y1] = [Infinity, -Infinity, Infinity, -Infinity];
    for (let i = 0; i < n; i++) {
      if (x[i] < x0) x0 = x[i];
      if (x[i] > x1) x1 = x[i];
      if (y[i] < y0) y0 = y[i];
      if (y[i] > y1) y1 = y[i];
    }
    const half = Math.max(x1 - x0, y1 - y0, 1e-9) / 2;
    const [cx, cy] = [(x0 + x1) / 2, (y0 + y1) / 2];
    const xy = new Float32Array(2 * n);
    for (let i = 0; i < n; i++) {
      xy[2 * i] = (x[i] - cx) / half;
      xy[2 * i + 1] = (y[i] - cy) / half;
    }
    this.fit = { cx, cy, half };
    this.xy = xy;
    this.n = n;
    this.buildGrid();
    this.points.setPositions(xy);
    this.setColors(rgba);
  }

  /** New colours for the same points (4 bytes each; alpha 0 hides a point from hover too). */
  setColors(rgba) {
    this.rgba = rgba;
    this.points.setColors(rgba);
    this.draw();
  }

  resetView() {
    this.view = { zoom: 1, x: 0, y: 0 };
    this.draw();
  }

  /** Draw at the next frame (a frame while the view moves may be a preview: points_cpu.js). */
  draw() {
    cancelAnimationFrame(this.frame);
    this.frame = requestAnimationFrame(() => {
      this.paint({ moving: true });
      this.drawOverlay();
    });
  }

  /** Draw now, every point (exports and screenshots call this: they cannot wait for a frame). */
  paint({ moving = false } = {}) {
    const { canvas } = this;
    const ratio = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(canvas.clientWidth * ratio));
    const h = Math.max(1, Math.round(canvas.clientHeight * ratio));
    if (canvas.width !== w || canvas.height !== h) [canvas.width, canvas.height] = [w, h];
    const fit = 0.92 * this.view.zoom;
    const aspect = w / h;
    this.scale = [aspect > 1 ? fit / aspect : fit, aspect > 1 ? fit : fit * aspect];
    const base = Math.max(1.5, Math.min(6, 6 - 1.2 * Math.log10(Math.max(1, this.n / 1000))));
    this.pointPx = Math.min(24, base * Math.sqrt(this.view.zoom));
    const full = this.points.paint(w, h, this.scale, [this.view.x, this.view.y], this.pointPx * ratio, { moving });
    this.painted(full);
  }

  /** Count a frame on the canvas (`data-frames`; `data-full`: those that drew every point, whose
   * number is `data-drawn`; `data-paint-ms`: how long the CPU took for the last of them), for
   * tests and benchmarks. */
  painted(full) {
    const d = this.canvas.dataset;
    d.frames = String(Number(d.frames) + 1);
    if (!full) return;
    [d.full, d.drawn] = [String(Number(d.full) + 1), String(this.n)];
    if (this.points.fullMs !== undefined) d.paintMs = this.points.fullMs.toFixed(1);
  }

  /** Clip coordinates of a pointer event. */
  clip(event) {
    const r = this.canvas.getBoundingClientRect();
    return [((event.clientX - r.left) / r.width) * 2 - 1, 1 - ((event.clientY - r.top) / r.height) * 2];
  }

  /** Clip coordinates → the embedding's own coordinates (what a lasso is stored in). */
  toData([u, v]) {
    const { cx, cy, half } = this.fit;
    const [sx, sy] = this.scale ?? [0.92, 0.92];
    return [cx + ((u - this.view.x) / sx) * half, cy + ((v - this.view.y) / sy) * half];
  }

  /** The embedding's coordinates → CSS pixels in the canvas. */
  toPixels([x, y]) {
    const { cx, cy, half } = this.fit;
    const [sx, sy] = this.scale ?? [0.92, 0.92];
    const u = ((x - cx) / half) * sx + this.view.x;
    const v = ((y - cy) / half) * sy + this.view.y;
    return [((u + 1) / 2) * this.canvas.clientWidth, ((1 - v) / 2) * this.canvas.clientHeight];
  }

  /** A uniform grid of point indices over the normalized square [-1, 1]² (counting sort). */
  buildGrid() {
    const G = Math.max(16, Math.min(1024, Math.round(Math.sqrt(this.n / 4))));
    const cellOf = (i) => {
      const gx = Math.min(G - 1, Math.max(0, Math.floor(((this.xy[2 * i] + 1) / 2) * G)));
      const gy = Math.min(G - 1, Math.max(0, Math.floor(((this.xy[2 * i + 1] + 1) / 2) * G)));
      return gy * G + gx;
    };
    const start = new Uint32Array(G * G + 1);
    const cells = new Uint32Array(this.n);
    for (let i = 0; i < this.n; i++) start[(cells[i] = cellOf(i)) + 1]++;
    for (let k = 0; k < G * G; k++) start[k + 1] += start[k];
    const fill = start.slice(0, G * G);
    const order = new Uint32Array(this.n);
    for (let i = 0; i < this.n; i++) order[fill[cells[i]]++] = i;
    this.grid = { G, start, order };
  }

  /** The visible point nearest to clip position (u, v) within `px` CSS pixels, or null. */
  nearest([u, v], px) {
    if (!this.grid || !this.n) return null;
    const [sx, sy] = this.scale;
    const nx = (u - this.view.x) / sx;
    const ny = (v - this.view.y) / sy;
    const rx = (2 * px) / (this.canvas.clientWidth * sx);
    const ry = (2 * px) / (this.canvas.clientHeight * sy);
    const { G, start, order } = this.grid;
    const at = (c) => Math.floor(((c + 1) / 2) * G);
    let best = null;
    let bestD = Infinity;
    for (let gy = Math.max(0, at(ny - ry)); gy <= Math.min(G - 1, at(ny + ry)); gy++) {
      for (let gx = Math.max(0, at(nx - rx)); gx <= Math.min(G - 1, at(nx + rx)); gx++) {
        const k = gy * G + gx;
        for (let p = start[k]; p < start[k + 1]; p++) {
          const i = order[p];
          if (this.rgba && this.rgba[4 * i + 3] === 0) continue;
          const dx = (this.xy[2 * i] - nx) / rx;
          const dy = (this.xy[2 * i + 1] - ny) / ry;
          const d = dx * dx + dy * dy;
          if (d <= 1 && d < bestD) [best, bestD] = [i, d];
        }
      }
    }
    return best;
  }

  setMode(mode) {
    this.mode = mode;
    this.canvas.dataset.mode = mode;
    this.clearLasso();
  }

  clearLasso() {
    this.lassoPath = null;
    this.drawOverlay();
  }

  /** The lasso being drawn (or the last one) on the overlay canvas. */
  drawOverlay() {
    const o = this.overlay;
    if (!o) return;
    const ratio = window.devicePixelRatio || 1;
    const [w, h] = [Math.round(this.canvas.clientWidth * ratio), Math.round(this.canvas.clientHeight * ratio)];
    if (o.width !== w || o.height !== h) [o.width, o.height] = [w, h];
    const ctx = o.getContext("2d");
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, o.width, o.height);
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    if (!this.lassoPath || this.lassoPath.length < 2) return;
    ctx.beginPath();
    this.lassoPath.forEach((p, i) => {
      const [px, py] = this.toPixels(p);
      if (i) ctx.lineTo(px, py);
      else ctx.moveTo(px, py);
    });
    ctx.closePath();
    ctx.fillStyle = "rgba(47, 95, 179, 0.12)";
    ctx.strokeStyle = "#2f5fb3";
    ctx.lineWidth = 1.5;
    ctx.setLineDash([5, 3]);
    ctx.fill();
    ctx.stroke();
  }

  zoomBy(factor, [cx, cy] = [0, 0]) {
    const v = this.view;
    const zoom = Math.min(200, Math.max(0.5, v.zoom * factor));
    const k = zoom / v.zoom;
    // keep the point under (cx, cy) in clip space where it is
    this.view = { zoom, x: cx - (cx - v.x) * k, y: cy - (cy - v.y) * k };
    this.draw();
  }

  panBy(dx, dy) {
    this.view = { ...this.view, x: this.view.x + dx, y: this.view.y + dy };
    this.draw();
  }

  bindControls() {
    const canvas = this.canvas;
    const clip = (event) => this.clip(event);
    canvas.addEventListener("wheel", (event) => {
      event.preventDefault();
      this.zoomBy(Math.exp(-event.deltaY * 0.0015), clip(event));
    }, { passive: false });
    let drag = null;
    canvas.addEventListener("pointerdown", (event) => {
      drag = clip(event);
      canvas.setPointerCapture(event.pointerId);
      if (this.mode === "lasso") this.lassoPath = [this.toData(drag)];
      this.onHover?.(null, event);
    });
    canvas.addEventListener("pointermove", (event) => {
      if (!drag) {
        if (this.onHover) this.onHover(this.nearest(clip(event), Math.max(4, this.pointPx)), event);
        return;
      }
      const now = clip(event);
      if (this.mode === "lasso") {
        this.lassoPath.push(this.toData(now));
        this.drawOverlay();
        return;
      }
      this.panBy(now[0] - drag[0], now[1] - drag[1]);
      drag = now;
    });
    canvas.addEventListener("pointerleave", (event) => this.onHover?.(null, event));
    canvas.addEventListener("pointerup", () => {
      drag = null;
      if (this.mode === "lasso" && this.lassoPath?.length >= 3) this.onLasso?.(this.lassoPath.slice());
    });
    canvas.addEventListener("keydown", (event) => {
      const step = 0.1;
      const actions = {
        ArrowLeft: () => this.panBy(step, 0), ArrowRight: () => this.panBy(-step, 0),
        ArrowUp: () => this.panBy(0, -step), ArrowDown: () => this.panBy(0, step),
        "+": () => this.zoomBy(1.25), "=": () => this.zoomBy(1.25), "-": () => this.zoomBy(0.8),
        0: () => this.resetView(),
      };
      if (actions[event.key]) {
        actions[event.key]();
        event.preventDefault();
      }
    });
  }
}
