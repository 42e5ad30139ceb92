// The scatter's points on the GPU: one WebGL draw call of GL points, a colour per point in a
// byte buffer, pan and zoom as two uniforms. A graphics card draws a million points in about a
// millisecond; a WebGL that runs in software (SwiftShader, llvmpipe) takes over a second for
// them, which is why scatter.js asks for this one only when the GPU does the work.

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

const CONTEXT = { antialias: false, preserveDrawingBuffer: true, alpha: false };

function compile(gl, type, source) {
  const shader = gl.createShader(type);
  gl.shaderSource(shader, source);
  gl.compileShader(shader);
  if (!gl.getShaderParameter(shader, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(shader));
  return shader;
}

/** Whether this browser draws WebGL on a GPU: a context that refuses a "major performance
 * caveat" (software rendering) is created, on a throwaway canvas. */
export function hardwareWebGL() {
  const probe = document.createElement("canvas");
  const gl = probe.getContext("webgl", { ...CONTEXT, failIfMajorPerformanceCaveat: true });
  if (!gl) return false;
  const info = gl.getExtension("WEBGL_debug_renderer_info");
  const renderer = String(gl.getParameter(info ? info.UNMASKED_RENDERER_WEBGL : gl.RENDERER));
  gl.getExtension("WEBGL_lose_context")?.loseContext();
  return !/swiftshader|llvmpipe|softpipe|software|basic render/i.test(renderer);
}

export class GLPoints {
  /** @param {HTMLCanvasElement} canvas */
  constructor(canvas) {
    const gl = canvas.getContext("webgl", CONTEXT);
    if (!gl) throw new Error("this browser cannot draw WebGL on this canvas");
    this.gl = gl;
    this.kind = "webgl";
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
  }

  /** Positions in [-1, 1]² (2 floats a point). */
  setPositions(xy) {
    const gl = this.gl;
    gl.bindBuffer(gl.ARRAY_BUFFER, this.positions);
    gl.bufferData(gl.ARRAY_BUFFER, xy, gl.STATIC_DRAW);
    this.n = xy.length / 2;
  }

  /** 4 bytes (RGBA) a point. */
  setColors(rgba) {
    const gl = this.gl;
    gl.bindBuffer(gl.ARRAY_BUFFER, this.colors);
    gl.bufferData(gl.ARRAY_BUFFER, rgba, gl.STATIC_DRAW);
  }

  /** Draw every point into a w × h device-pixel canvas: clip position = xy · scale + offset,
   * discs of `size` device pixels, blended over white in index order (every frame: a GPU
   * needs no shortcut while the view moves). Returns true (every point drawn). */
  paint(w, h, scale, offset, size) {
    const { gl, loc } = this;
    gl.viewport(0, 0, w, h);
    gl.clearColor(1, 1, 1, 1);
    gl.clear(gl.COLOR_BUFFER_BIT);
    if (!this.n) return true;
    gl.useProgram(this.program);
    gl.enable(gl.BLEND);
    gl.blendFunc(gl.SRC_ALPHA, gl.ONE_MINUS_SRC_ALPHA);
    gl.uniform2f(loc.scale, ...scale);
    gl.uniform2f(loc.offset, ...offset);
    gl.uniform1f(loc.size, size);
    gl.bindBuffer(gl.ARRAY_BUFFER, this.positions);
    gl.enableVertexAttribArray(loc.pos);
    gl.vertexAttribPointer(loc.pos, 2, gl.FLOAT, false, 0, 0);
    gl.bindBuffer(gl.ARRAY_BUFFER, this.colors);
    gl.enableVertexAttribArray(loc.color);
    gl.vertexAttribPointer(loc.color, 4, gl.UNSIGNED_BYTE, true, 0, 0);
    gl.drawArrays(gl.POINTS, 0, this.n);
    return true;
  }
}
