/**
 * Forecast charts as PNG, drawn in-process: the actual series, the forecast, its interval band
 * and the threshold line, with time and value axes and a legend. No browser, no native code,
 * no font files: a raster, a 5×7 bitmap font and node:zlib.
 */
import { Raster, type Rect, type Rgb } from './raster.js';
import type { ChartSpec } from './types.js';

const COLORS = {
  text: [40, 40, 40] as Rgb,
  muted: [110, 110, 110] as Rgb,
  grid: [232, 232, 232] as Rgb,
  axis: [150, 150, 150] as Rgb,
  actual: [31, 78, 153] as Rgb,
  markers: [11, 42, 92] as Rgb,
  fitted: [120, 120, 120] as Rgb,
  forecast: [224, 123, 0] as Rgb,
  threshold: [198, 40, 40] as Rgb,
  now: [170, 170, 170] as Rgb,
};

const SCALE = 2;
const MIB = 1_048_576;
const GIB = 1024 * MIB;
const SMALL = 1;
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const TIME_STEPS = [5 * MINUTE, 10 * MINUTE, 15 * MINUTE, 30 * MINUTE, HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 7 * DAY];

export interface ChartSize {
  width?: number;
  height?: number;
}

/** Renders the chart as a PNG file's bytes. */
export function renderChart(spec: ChartSpec, size: ChartSize = {}): Buffer {
  const width = size.width ?? 860;
  const height = size.height ?? 420;
  const raster = new Raster(width, height);
  const plot: Rect = { x: 112, y: 44, w: width - 112 - 24, h: height - 44 - 78 };

  raster.text(16, 12, spec.title, COLORS.text, SCALE);

  const [xMin, xMax] = timeRange(spec);
  const [yMin, yMax] = valueRange(spec);
  const px = (t: number) => plot.x + ((t - xMin) / (xMax - xMin)) * plot.w;
  const py = (v: number) => plot.y + plot.h - ((v - yMin) / (yMax - yMin)) * plot.h;

  // grid and value axis
  for (const v of valueTicks(yMin, yMax, spec.unit)) {
    const y = Math.round(py(v)) + 0.5;
    raster.line(plot.x, y, plot.x + plot.w, y, COLORS.grid, 1);
    const label = formatValue(v, spec.unit, yMax - yMin > 4 * GIB);
    raster.text(plot.x - 8 - Raster.textWidth(label, SMALL * 2), y - 7, label, COLORS.muted, SMALL * 2);
  }
  const step = TIME_STEPS.find((s) => (xMax - xMin) / s <= 8) ?? Math.ceil((xMax - xMin) / (8 * DAY)) * DAY;
  for (let t = Math.ceil(xMin / step) * step; t <= xMax; t += step) {
    const x = Math.round(px(t)) + 0.5;
    raster.line(x, plot.y, x, plot.y + plot.h, COLORS.grid, 1);
    const label = timeLabel(t, step);
    raster.text(x - Raster.textWidth(label, 2) / 2, plot.y + plot.h + 8, label, COLORS.muted, 2);
  }
  raster.line(plot.x, plot.y + plot.h + 0.5, plot.x + plot.w, plot.y + plot.h + 0.5, COLORS.axis, 1);
  raster.line(plot.x - 0.5, plot.y, plot.x - 0.5, plot.y + plot.h, COLORS.axis, 1);

  // now
  const nowX = Math.round(px(spec.now)) + 0.5;
  for (let y = plot.y; y < plot.y + plot.h; y += 9) raster.line(nowX, y, nowX, Math.min(y + 5, plot.y + plot.h), COLORS.now, 1);
  raster.text(Math.min(nowX + 4, plot.x + plot.w - Raster.textWidth('NOW', 2)), plot.y + 4, 'NOW', COLORS.now, 2);

  if (spec.band) {
    raster.fillBetween(spec.band.xs.map(px), spec.band.lower.map(py), spec.band.upper.map(py), COLORS.forecast, 0.22, plot);
  }
  raster.polyline(spec.actual.xs.map(px), spec.actual.ys.map(py), COLORS.actual, 1.4, plot);
  if (spec.fitted) raster.polyline(spec.fitted.xs.map(px), spec.fitted.ys.map(py), COLORS.fitted, 1.5, plot);
  if (spec.markers) {
    spec.markers.xs.forEach((t, i) => {
      const x = px(t);
      const y = py(spec.markers!.ys[i] as number);
      if (x >= plot.x && x <= plot.x + plot.w && y >= plot.y && y <= plot.y + plot.h) raster.dot(x, y, 2.6, COLORS.markers);
    });
  }
  raster.polyline(spec.forecast.xs.map(px), spec.forecast.ys.map(py), COLORS.forecast, 2.6, plot);
  if (spec.threshold && spec.threshold.value >= yMin && spec.threshold.value <= yMax) {
    const y = py(spec.threshold.value);
    raster.dashedHorizontal(plot.x, plot.x + plot.w, y, COLORS.threshold, 8, 5, 2);
    const label = spec.threshold.label;
    const w = Raster.textWidth(label, 2) + 8;
    const above = y - 22 >= plot.y ? y - 22 : null;
    const below = y + 4 + 18 <= plot.y + plot.h ? y + 4 : null;
    const right = plot.x + plot.w - w - 2;
    const left = plot.x + 4;
    // beside the line, where it hides the least of the series (and of the NOW mark): right first
    const candidates = [above, below].flatMap((top) => (top === null ? [] : [{ x: right, y: top, w, h: 18 }, { x: left, y: top, w, h: 18 }]));
    const drawn = [spec.actual, spec.forecast, ...(spec.band ? [{ xs: spec.band.xs, ys: spec.band.upper }, { xs: spec.band.xs, ys: spec.band.lower }] : [])];
    const points = drawn.flatMap((line) => alongLine(line.xs.map(px), line.ys.map((v) => py(v))));
    const nowMark: Rect = { x: nowX - 2, y: plot.y, w: Raster.textWidth('NOW', 2) + 8, h: 22 };
    const box = leastCovering(candidates.length ? candidates : [{ x: right, y: y + 4, w, h: 18 }], points, nowMark);
    raster.fillRect(box.x, box.y, box.w, box.h, [255, 255, 255], 0.85);
    raster.text(box.x + 4, box.y + 2, label, COLORS.threshold, 2);
  }

  // legend
  const items: { label: string; draw: (x: number, y: number) => void }[] = [
    { label: spec.actual.label, draw: (x, y) => raster.line(x, y, x + 22, y, COLORS.actual, 2) },
  ];
  if (spec.markers) items.push({ label: spec.markers.label, draw: (x, y) => raster.dot(x + 11, y, 3, COLORS.markers) });
  items.push({ label: spec.forecast.label, draw: (x, y) => raster.line(x, y, x + 22, y, COLORS.forecast, 3) });
  if (spec.band) items.push({ label: spec.band.label, draw: (x, y) => raster.fillRect(x, y - 6, 22, 12, COLORS.forecast, 0.3) });
  if (spec.threshold) items.push({ label: 'THRESHOLD', draw: (x, y) => raster.dashedHorizontal(x, x + 22, y, COLORS.threshold, 6, 4, 2) });
  let x = plot.x;
  let y = height - 40;
  for (const item of items) {
    const w = 30 + Raster.textWidth(item.label, 2) + 24;
    if (x + w > width - 10) {
      x = plot.x;
      y += 22;
    }
    item.draw(x, y);
    raster.text(x + 30, y - 7, item.label, COLORS.text, 2);
    x += w;
  }
  return raster.toPng();
}

function timeRange(spec: ChartSpec): [number, number] {
  const all = [...spec.actual.xs, ...spec.forecast.xs, ...(spec.band?.xs ?? []), spec.now].filter(Number.isFinite);
  let lo = Math.min(...all);
  let hi = Math.max(...all);
  if (!(hi > lo)) {
    lo -= HOUR;
    hi += HOUR;
  }
  return [lo, hi];
}

function valueRange(spec: ChartSpec): [number, number] {
  if (spec.unit === 'probability') return [-0.06, 1.06];
  const all = [
    ...spec.actual.ys,
    ...spec.forecast.ys,
    ...(spec.band?.lower ?? []),
    ...(spec.band?.upper ?? []),
    ...(spec.markers?.ys ?? []),
    ...(spec.threshold ? [spec.threshold.value] : []),
  ].filter(Number.isFinite);
  let lo = Math.min(...all);
  let hi = Math.max(...all);
  if (spec.unit === 'fraction') {
    lo = Math.min(lo, 0);
    hi = Math.max(hi, 1);
  } else if (spec.unit === 'bytes' || spec.unit === 'ms') {
    lo = Math.max(0, lo - 0.08 * (hi - lo));
  }
  if (!(hi > lo)) {
    hi = lo + (Math.abs(lo) || 1);
  }
  const pad = 0.06 * (hi - lo);
  return [spec.unit === 'fraction' ? lo - pad : lo, hi + pad];
}

/** Round tick values for the axis; bytes tick at round MiB or GiB. */
function valueTicks(lo: number, hi: number, unit: ChartSpec['unit']): number[] {
  if (unit !== 'bytes') return niceTicks(lo, hi, 6);
  const base = hi - lo > 4 * GIB ? GIB : MIB;
  return niceTicks(lo / base, hi / base, 6).map((v) => v * base);
}

/** About `count` round tick values covering [lo, hi]. */
export function niceTicks(lo: number, hi: number, count: number): number[] {
  const raw = (hi - lo) / count;
  const magnitude = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = ([1, 2, 2.5, 5, 10].find((m) => m * magnitude >= raw) ?? 10) * magnitude;
  const ticks: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

function formatValue(v: number, unit: ChartSpec['unit'], inGib: boolean): string {
  switch (unit) {
    case 'bytes':
      return inGib ? `${Number((v / GIB).toFixed(2))} GIB` : `${Number((v / MIB).toFixed(1))} MIB`;
    case 'ms':
      return v >= 10_000 ? `${Number((v / 1000).toPrecision(3))} s` : `${Number(v.toPrecision(3))} ms`;
    case 'probability':
    case 'fraction':
      return `${Math.round(v * 100)}%`;
  }
}

/**
 * Of the places a label may go (best first), the one over the fewest of the drawn points, and not
 * over `avoid`: the first of those tied.
 */
export function leastCovering(candidates: readonly Rect[], points: readonly (readonly [number, number])[], avoid: Rect): Rect {
  const inside = (r: Rect, x: number, y: number) => x >= r.x - 2 && x <= r.x + r.w + 2 && y >= r.y - 2 && y <= r.y + r.h + 2;
  const overlaps = (a: Rect, b: Rect) => a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
  let best = candidates[0]!;
  let bestCost = Infinity;
  for (const candidate of candidates) {
    let cost = overlaps(candidate, avoid) ? 1_000 : 0;
    for (const [x, y] of points) if (inside(candidate, x, y)) cost++;
    if (cost < bestCost) {
      best = candidate;
      bestCost = cost;
    }
  }
  return best;
}

/** Points along a polyline, its vertices and every 4 px between them: what a label over it would hide. */
function alongLine(xs: readonly number[], ys: readonly number[]): [number, number][] {
  const out: [number, number][] = [];
  for (let i = 0; i < xs.length; i++) {
    const x = xs[i]!;
    const y = ys[i]!;
    if (!Number.isFinite(x) || !Number.isFinite(y)) continue;
    const prevX = xs[i - 1];
    const prevY = ys[i - 1];
    if (prevX !== undefined && prevY !== undefined && Number.isFinite(prevX) && Number.isFinite(prevY)) {
      const steps = Math.min(500, Math.floor(Math.hypot(x - prevX, y - prevY) / 4));
      for (let k = 1; k < steps; k++) out.push([prevX + ((x - prevX) * k) / steps, prevY + ((y - prevY) * k) / steps]);
    }
    out.push([x, y]);
  }
  return out;
}

function timeLabel(t: number, step: number): string {
  const iso = new Date(t).toISOString();
  if (step >= DAY) return iso.slice(5, 10);
  const hm = iso.slice(11, 16);
  return hm === '00:00' && step >= HOUR ? iso.slice(5, 10) : hm;
}
