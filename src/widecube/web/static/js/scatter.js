// The embedding scatter in raw WebGL: one draw call of GL points, a colour per point in a
// byte buffer, and pan/zoom as two uniforms, so it stays smooth with millions of cells.
// Drag or use the arrow keys to pan, the wheel or +/- to zoom, 0 to reset. In lasso mode a
// drag draws a polygon (on a 2-d canvas laid over the WebGL one) and hands it over in the
// embedding's own coordinates. Hovering finds the nearest visible point through a uniform
// grid over the points (built once per data set: a lookup costs a few cells, not a scan).

const VERTEX = `
attribute vec2 a_pos;
attribute vec4 a_color;
uniform vec2 u_scale;
uniform vec2 u_offset;
uniform float u_size;
varying vec4 v_color;
void main() {
  gl_Position = vec4(a_pos * u_scale + u_offset, 0.0, 1.0);
  gl_PointSize = u_size;
  v_color = a_color;
}`;

const FRAGMENT = `
precision mediump float;
varying vec4 v_color;
void main() {
  vec2 d = gl_PointCoord - vec2(0.5);
  if (dot(d, d) > 0.25) discard;
  gl_FragColor = v_color;
}`;

function compile(gl, type, source) {
  const shader = gl.createShader(type);
  gl.shaderSource(shader, source);
  gl.compileShader(shader);
  if (!gl.getShaderParameter(shader, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(shader));
  return shader;
}

export class Scatter {
  /** @param {HTMLCanvasElement} canvas */
  constructor(canvas) {
    this.canvas = canvas;
    const gl = canvas.getContext("webgl", { antialias: false, preserveDrawingBuffer: true, alpha: false });
    if (!gl) throw new Error("this browser has no WebGL, which the embedding view needs");
    this.gl = gl;
    const program = gl.createProgram();
    gl.attachShader(program, compile(gl, gl.VERTEX_SHADER, VERTEX));
    gl.attachShader(program, compile(gl, gl.FRAGMENT_SHADER, FRAGMENT));
    gl.linkProgram(program);
    if (!gl.getProgramParameter(program, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(program));
    this.program = program;
    this.loc = {
      pos: gl.getAttribLocation(program, "a_pos"), color: gl.getAttribLocation(program, "a_color"),
      scale: gl.getUniformLocation(program, "u_scale"), offset: gl.getUniformLocation(program, "u_offset"),
      size: gl.getUniformLocation(program, "u_size"),
    };
    this.positions = gl.createBuffer();
    this.colors = gl.createBuffer();
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
    const gl = this.gl;
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
    gl.bindBuffer(gl.ARRAY_BUFFER, this.positions);
    gl.bufferData(gl.ARRAY_BUFFER, xy, gl.STATIC_DRAW);
    this.n = n;
    this.setColors(rgba);
  }

  /** New colours for the same points (4 bytes each; alpha 0 hides a point from hover too). */
  setColors(rgba) {
    this.rgba = rgba;
    const gl = this.gl;
    gl.bindBuffer(gl.ARRAY_BUFFER, this.colors);
    gl.bufferData(gl.ARRAY_BUFFER, rgba, gl.STATIC_DRAW);
    this.draw();
  }

  resetView() {
    this.view = { zoom: 1, x: 0, y: 0 };
    this.draw();
  }

  draw() {
    cancelAnimationFrame(this.frame);
    this.frame = requestAnimationFrame(() => {
      this.paint();
      this.drawOverlay();
    });
  }

  /** Draw now (also used by tests and screenshots, which cannot wait for a frame). */
  paint() {
    const { gl, canvas, loc } = this;
    const ratio = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(canvas.clientWidth * ratio));
    const h = Math.max(1, Math.round(canvas.clientHeight * ratio));
    if (canvas.width !== w || canvas.height !== h) [canvas.width, canvas.height] = [w, h];
    gl.viewport(0, 0, w, h);
    gl.clearColor(1, 1, 1, 1);
    gl.clear(gl.COLOR_BUFFER_BIT);
    if (!this.n) return;
    gl.useProgram(this.program);
    gl.enable(gl.BLEND);
    gl.blendFunc(gl.SRC_ALPHA, gl.ONE_MINUS_SRC_ALPHA);
    const fit = 0.92 * this.view.zoom;
    const aspect = w / h;
    this.scale = [aspect > 1 ? fit / aspect : fit, aspect > 1 ? fit : fit * aspect];
    gl.uniform2f(loc.scale, ...this.scale);
    gl.uniform2f(loc.offset, this.view.x, this.view.y);
    const base = Math.max(1.5, Math.min(6, 6 - 1.2 * Math.log10(Math.max(1, this.n / 1000))));
    this.pointPx = Math.min(24, base * Math.sqrt(this.view.zoom));
    gl.uniform1f(loc.size, this.pointPx * ratio);
    gl.bindBuffer(gl.ARRAY_BUFFER, this.positions);
    gl.enableVertexAttribArray(loc.pos);
    gl.vertexAttribPointer(loc.pos, 2, gl.FLOAT, false, 0, 0);
    gl.bindBuffer(gl.ARRAY_BUFFER, this.colors);
    gl.enableVertexAttribArray(loc.color);
    gl.vertexAttribPointer(loc.color, 4, gl.UNSIGNED_BYTE, true, 0, 0);
    gl.drawArrays(gl.POINTS, 0, this.n);
    this.canvas.dataset.drawn = String(this.n);
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
    [o.width, o.height] = [Math.round(this.canvas.clientWidth * ratio), Math.round(this.canvas.clientHeight * ratio)];
    const ctx = o.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, o.width, o.height);
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
