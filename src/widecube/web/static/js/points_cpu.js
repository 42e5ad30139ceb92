// The scatter's points drawn by the CPU: each point is written as a small disc straight into
// the pixels of one ImageData (a Uint32Array view, one word a pixel), blended over what is
// there in index order as WebGL's blending does, then put on a 2-d canvas in one call. No
// object is made per point: a million points cost a few tens of milliseconds of plain loops,
// where a WebGL that runs in software (SwiftShader, llvmpipe: Chromium without a usable GPU)
// takes over a second; scatter.js uses this one whenever WebGL is not on a GPU.
//
// While the view moves (a drag, the wheel), a frame whose full drawing would take longer than
// FRAME_BUDGET_MS shows the last full drawing moved and scaled to the new view (one drawImage,
// whatever the number of points), and every point is drawn again once the view has been
// still for SETTLE_MS. A frame that asks for everything now (an export) gets a full drawing.

const WHITE = 0xffffffff;
const FRAME_BUDGET_MS = 12;
const SETTLE_MS = 150;

/** Row spans of a disc of diameter `size` pixels: [dy, half width] pairs (a lone pixel for
 * small sizes). */
export function discSpans(size) {
  const r = Math.max(0.5, size / 2);
  const reach = Math.floor(r);
  const spans = [];
  for (let dy = -reach; dy <= reach; dy++) spans.push(dy, Math.floor(Math.sqrt(r * r - dy * dy)));
  return spans;
}

/** The disc's pixels as offsets from its centre in a row-major image `w` pixels wide. */
function discOffsets(spans, w) {
  const out = [];
  for (let s = 0; s < spans.length; s += 2) {
    for (let dx = -spans[s + 1]; dx <= spans[s + 1]; dx++) out.push(spans[s] * w + dx);
  }
  return Int32Array.from(out);
}

const same = (a, b) => a[0] === b[0] && a[1] === b[1];

/** Blend `rb`/`g` (a colour's red+blue and green bits, premultiplied by its alpha) over the
 * pixel word `d`, `keep` = 256 − alpha: two channels in one multiply (they cannot carry). */
const blend = (d, rb, g, keep) => (0xff000000
  | ((((d & 0xff00ff) * keep + rb) >>> 8) & 0xff00ff)
  | ((((d & 0xff00) * keep + g) >>> 8) & 0xff00)) >>> 0;

export class RasterPoints {
  /** @param {HTMLCanvasElement} canvas */
  constructor(canvas) {
    this.ctx = canvas.getContext("2d", { alpha: false });
    if (!this.ctx) throw new Error("this browser cannot draw on a canvas");
    this.kind = "cpu";
    this.xy = new Float32Array(0);
    this.setColors(new Uint8Array(0));
    this.image = null;
    this.cache = document.createElement("canvas"); // the last full drawing, for moving frames
    this.last = null; // {w, h, scale, offset} of the cached drawing; null: none (or stale)
    this.fullMs = 0;
    this.onSettled = null; // () => void, after the full drawing that follows a moving view
  }

  /** Positions in [-1, 1]² (2 floats a point), kept as given (not copied). */
  setPositions(xy) {
    this.xy = xy;
    this.last = null;
  }

  /** 4 bytes (RGBA) a point, kept as given and read a word at a time (little-endian: the
   * word is the pixel's, alpha in the top byte). */
  setColors(rgba) {
    const bytes = rgba.byteOffset % 4 ? rgba.slice() : rgba;
    this.words = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.length >> 2);
    this.last = null;
  }

  /** Draw into a w × h device-pixel canvas: clip position = xy · scale + offset, discs of
   * `size` device pixels. With `moving`, a frame may show the last full drawing transformed
   * (see above). Returns true when every point was drawn. */
  paint(w, h, scale, offset, size, { moving = false } = {}) {
    clearTimeout(this.settle);
    const last = this.last;
    const sameSize = last && last.w === w && last.h === h;
    if (sameSize && last.size === size && same(last.scale, scale) && same(last.offset, offset)) {
      this.ctx.drawImage(this.cache, 0, 0); // this very view is drawn already
      return true;
    }
    if (moving && sameSize && this.fullMs > FRAME_BUDGET_MS) {
      this.moved(last, w, h, scale, offset);
      this.settle = setTimeout(() => {
        this.paint(w, h, scale, offset, size);
        this.onSettled?.();
      }, SETTLE_MS);
      return false;
    }
    const t0 = performance.now();
    this.raster(w, h, scale, offset, size);
    if (this.cache.width !== w || this.cache.height !== h) [this.cache.width, this.cache.height] = [w, h];
    this.cache.getContext("2d").putImageData(this.image, 0, 0);
    this.ctx.drawImage(this.cache, 0, 0);
    this.fullMs = performance.now() - t0;
    this.last = { w, h, size, scale: [...scale], offset: [...offset] };
    return true;
  }

  /** The cached drawing, moved and scaled from its view to this one (the map is affine per
   * axis: pixel' = k · pixel + shift). */
  moved(last, w, h, scale, offset) {
    const kx = scale[0] / last.scale[0], ky = scale[1] / last.scale[1];
    const x = ((-1 - last.offset[0]) * kx + offset[0] + 1) * (w / 2);
    const y = (1 - ky * (1 - last.offset[1]) - offset[1]) * (h / 2);
    const ctx = this.ctx;
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, w, h);
    ctx.drawImage(this.cache, x, y, w * kx, h * ky);
  }

  /** Every point into this.image. */
  raster(w, h, scale, offset, size) {
    if (!this.image || this.image.width !== w || this.image.height !== h) {
      this.image = new ImageData(w, h);
      this.pixels = new Uint32Array(this.image.data.buffer);
    }
    const { xy, words, pixels } = this;
    pixels.fill(WHITE);
    const n = Math.min(xy.length / 2, words.length);
    // clip → pixel: x = (u + 1) / 2 · w, y = (1 − v) / 2 · h
    const ax = (scale[0] * w) / 2, bx = ((offset[0] + 1) * w) / 2;
    const ay = (-scale[1] * h) / 2, by = ((1 - offset[1]) * h) / 2;
    const spans = discSpans(size);
    const offsets = discOffsets(spans, w);
    const reach = spans[spans.length - 2];
    const [xlo, xhi, ylo, yhi] = [reach, w - reach, reach, h - reach]; // discs wholly inside
    for (let i = 0; i < n; i++) {
      const colour = words[i];
      const alpha = colour >>> 24;
      if (alpha === 0) continue;
      const fx = xy[2 * i] * ax + bx, fy = xy[2 * i + 1] * ay + by;
      if (!(fx > -reach - 1 && fx < w + reach && fy > -reach - 1 && fy < h + reach)) continue; // NaN too
      const word = (colour | 0xff000000) >>> 0;
      const a = alpha + (alpha >> 7); // 1…256, so that >>> 8 divides by 256
      const rb = (word & 0xff00ff) * a, g = (word & 0xff00) * a, keep = 256 - a;
      if (fx >= xlo && fx < xhi && fy >= ylo && fy < yhi) {
        const centre = (fy | 0) * w + (fx | 0);
        if (keep === 0) for (let k = 0; k < offsets.length; k++) pixels[centre + offsets[k]] = word;
        else {
          for (let k = 0; k < offsets.length; k++) {
            const p = centre + offsets[k];
            pixels[p] = blend(pixels[p], rb, g, keep);
          }
        }
        continue;
      }
      const cx = Math.floor(fx), cy = Math.floor(fy); // near an edge: clip each span
      for (let s = 0; s < spans.length; s += 2) {
        const y = cy + spans[s];
        if (y < 0 || y >= h) continue;
        const row = y * w;
        const x1 = Math.min(w - 1, cx + spans[s + 1]);
        for (let x = Math.max(0, cx - spans[s + 1]); x <= x1; x++) pixels[row + x] = blend(pixels[row + x], rb, g, keep);
      }
    }
  }
}
