/** An RGB pixel buffer with the few drawing operations a line chart needs, anti-aliased where it shows. */
import { drawableText, GLYPH_HEIGHT, GLYPH_WIDTH, glyphRows } from './font.js';
import { encodePng } from './png.js';

export type Rgb = readonly [number, number, number];

export class Raster {
  readonly pixels: Uint8Array;

  constructor(
    readonly width: number,
    readonly height: number,
    background: Rgb = [255, 255, 255],
  ) {
    this.pixels = new Uint8Array(width * height * 3);
    for (let i = 0; i < width * height; i++) this.pixels.set(background, i * 3);
  }

  /** Mixes `color` into the pixel with weight `alpha` in [0, 1]. */
  blend(x: number, y: number, color: Rgb, alpha: number): void {
    if (x < 0 || y < 0 || x >= this.width || y >= this.height || !(alpha > 0)) return;
    const a = Math.min(alpha, 1);
    const at = (y * this.width + x) * 3;
    for (let c = 0; c < 3; c++) {
      const old = this.pixels[at + c] as number;
      this.pixels[at + c] = Math.round(old + ((color[c] as number) - old) * a);
    }
  }

  fillRect(x: number, y: number, w: number, h: number, color: Rgb, alpha = 1): void {
    const x0 = Math.max(0, Math.round(x));
    const y0 = Math.max(0, Math.round(y));
    const x1 = Math.min(this.width, Math.round(x + w));
    const y1 = Math.min(this.height, Math.round(y + h));
    for (let yy = y0; yy < y1; yy++) for (let xx = x0; xx < x1; xx++) this.blend(xx, yy, color, alpha);
  }

  /**
   * A line of `width` pixels from (x0, y0) to (x1, y1): every pixel near the segment is inked by
   * how much of it the stroke covers. `clip` keeps it inside a rectangle.
   */
  line(x0: number, y0: number, x1: number, y1: number, color: Rgb, width = 1.5, clip?: Rect): void {
    const half = width / 2;
    const minX = Math.floor(Math.min(x0, x1) - half - 1);
    const maxX = Math.ceil(Math.max(x0, x1) + half + 1);
    const minY = Math.floor(Math.min(y0, y1) - half - 1);
    const maxY = Math.ceil(Math.max(y0, y1) + half + 1);
    const dx = x1 - x0;
    const dy = y1 - y0;
    const lengthSquared = dx * dx + dy * dy;
    for (let y = minY; y <= maxY; y++) {
      for (let x = minX; x <= maxX; x++) {
        if (clip && (x < clip.x || x >= clip.x + clip.w || y < clip.y || y >= clip.y + clip.h)) continue;
        const px = x + 0.5;
        const py = y + 0.5;
        const t = lengthSquared > 0 ? Math.max(0, Math.min(1, ((px - x0) * dx + (py - y0) * dy) / lengthSquared)) : 0;
        const distance = Math.hypot(px - (x0 + t * dx), py - (y0 + t * dy));
        const coverage = Math.max(0, Math.min(1, half + 0.5 - distance));
        if (coverage > 0) this.blend(x, y, color, coverage);
      }
    }
  }

  /** A polyline through the points, skipping gaps (non-finite coordinates). */
  polyline(xs: readonly number[], ys: readonly number[], color: Rgb, width = 1.5, clip?: Rect): void {
    for (let i = 1; i < xs.length; i++) {
      const [ax, ay, bx, by] = [xs[i - 1] as number, ys[i - 1] as number, xs[i] as number, ys[i] as number];
      if ([ax, ay, bx, by].every(Number.isFinite)) this.line(ax, ay, bx, by, color, width, clip);
    }
  }

  /** A dashed horizontal line. */
  dashedHorizontal(x0: number, x1: number, y: number, color: Rgb, dash = 8, gap = 5, width = 1.5): void {
    for (let x = x0; x < x1; x += dash + gap) this.line(x, y, Math.min(x + dash, x1), y, color, width);
  }

  /** Fills between two curves sampled at the same xs (pixel columns are linearly interpolated). */
  fillBetween(xs: readonly number[], lower: readonly number[], upper: readonly number[], color: Rgb, alpha: number, clip: Rect): void {
    for (let i = 1; i < xs.length; i++) {
      const xa = xs[i - 1] as number;
      const xb = xs[i] as number;
      if (![xa, xb, lower[i - 1], lower[i], upper[i - 1], upper[i]].every((v) => Number.isFinite(v))) continue;
      for (let x = Math.ceil(xa); x < xb; x++) {
        const f = xb > xa ? (x - xa) / (xb - xa) : 0;
        const lo = (lower[i - 1] as number) + f * ((lower[i] as number) - (lower[i - 1] as number));
        const hi = (upper[i - 1] as number) + f * ((upper[i] as number) - (upper[i - 1] as number));
        const top = Math.max(clip.y, Math.round(Math.min(lo, hi)));
        const bottom = Math.min(clip.y + clip.h, Math.round(Math.max(lo, hi)));
        if (x < clip.x || x >= clip.x + clip.w) continue;
        for (let y = top; y <= bottom; y++) this.blend(x, y, color, alpha);
      }
    }
  }

  dot(cx: number, cy: number, radius: number, color: Rgb): void {
    for (let y = Math.floor(cy - radius - 1); y <= Math.ceil(cy + radius + 1); y++) {
      for (let x = Math.floor(cx - radius - 1); x <= Math.ceil(cx + radius + 1); x++) {
        const coverage = Math.max(0, Math.min(1, radius + 0.5 - Math.hypot(x + 0.5 - cx, y + 0.5 - cy)));
        this.blend(x, y, color, coverage);
      }
    }
  }

  /** Width in pixels of `text` drawn at `scale`. */
  static textWidth(text: string, scale = 2): number {
    const n = drawableText(text).length;
    return n === 0 ? 0 : (n * (GLYPH_WIDTH + 1) - 1) * scale;
  }

  static textHeight(scale = 2): number {
    return GLYPH_HEIGHT * scale;
  }

  /** Draws `text` with its top-left corner at (x, y), each font cell `scale` pixels square. */
  text(x: number, y: number, text: string, color: Rgb, scale = 2): void {
    let cursor = Math.round(x);
    const top = Math.round(y);
    for (const ch of drawableText(text)) {
      glyphRows(ch).forEach((row, r) =>
        row.forEach((inked, c) => {
          if (inked) this.fillRect(cursor + c * scale, top + r * scale, scale, scale, color);
        }),
      );
      cursor += (GLYPH_WIDTH + 1) * scale;
    }
  }

  toPng(): Buffer {
    return encodePng(this.width, this.height, this.pixels);
  }
}

export interface Rect {
  x: number;
  y: number;
  w: number;
  h: number;
}
