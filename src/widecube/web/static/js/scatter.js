// The embedding scatter in raw WebGL: one draw call of GL points, a colour per point in a
// byte buffer, and pan/zoom as two uniforms, so it stays smooth with millions of cells.
// Drag or use the arrow keys to pan, the wheel or +/- to zoom, 0 to reset.

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
    gl.bindBuffer(gl.ARRAY_BUFFER, this.positions);
    gl.bufferData(gl.ARRAY_BUFFER, xy, gl.STATIC_DRAW);
    this.n = n;
    this.setColors(rgba);
  }

  /** New colours for the same points (4 bytes each). */
  setColors(rgba) {
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
    this.frame = requestAnimationFrame(() => this.paint());
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
    gl.uniform2f(loc.scale, aspect > 1 ? fit / aspect : fit, aspect > 1 ? fit : fit * aspect);
    gl.uniform2f(loc.offset, this.view.x, this.view.y);
    const base = Math.max(1.5, Math.min(6, 6 - 1.2 * Math.log10(Math.max(1, this.n / 1000))));
    gl.uniform1f(loc.size, Math.min(24, base * ratio * Math.sqrt(this.view.zoom)));
    gl.bindBuffer(gl.ARRAY_BUFFER, this.positions);
    gl.enableVertexAttribArray(loc.pos);
    gl.vertexAttribPointer(loc.pos, 2, gl.FLOAT, false, 0, 0);
    gl.bindBuffer(gl.ARRAY_BUFFER, this.colors);
    gl.enableVertexAttribArray(loc.color);
    gl.vertexAttribPointer(loc.color, 4, gl.UNSIGNED_BYTE, true, 0, 0);
    gl.drawArrays(gl.POINTS, 0, this.n);
    this.canvas.dataset.drawn = String(this.n);
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
    const clip = (event) => {
      const r = canvas.getBoundingClientRect();
      return [((event.clientX - r.left) / r.width) * 2 - 1, 1 - ((event.clientY - r.top) / r.height) * 2];
    };
    canvas.addEventListener("wheel", (event) => {
      event.preventDefault();
      this.zoomBy(Math.exp(-event.deltaY * 0.0015), clip(event));
    }, { passive: false });
    let drag = null;
    canvas.addEventListener("pointerdown", (event) => {
      drag = clip(event);
      canvas.setPointerCapture(event.pointerId);
    });
    canvas.addEventListener("pointermove", (event) => {
      if (!drag) return;
      const now = clip(event);
      this.panBy(now[0] - drag[0], now[1] - drag[1]);
      drag = now;
    });
    canvas.addEventListener("pointerup", () => (drag = null));
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
