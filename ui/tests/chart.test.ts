// The chart layer: decimation of long series, tick formats, and the plots it builds.
import { describe, expect, it } from 'vitest';
import {
  decimate,
  formatExponent,
  lineChart,
  scatterChart,
  showChart,
  toPoints,
  type ChartPoint,
  type FocusedPoint,
} from '../src/lib/chart';
import { linePoints, pointAt, tickLabels } from './helpers/plot';

function series(length: number, y: (i: number) => number): ChartPoint[] {
  return Array.from({ length }, (_, i) => ({ x: i, y: y(i) }));
}

describe('decimate', () => {
  it('passes a series that already fits through unchanged', () => {
    const small = series(40, (i) => Math.sin(i));
    expect(decimate(small, 10)).toEqual(small);
  });

  it('keeps at most four points per column, in x order, with both endpoints', () => {
    const long = series(100_000, (i) => Math.cos(i / 50));
    const kept = decimate(long, 500);
    expect(kept.length).toBeLessThanOrEqual(4 * 500);
    expect(kept.length).toBeGreaterThan(500);
    expect(kept[0]).toBe(long[0]);
    expect(kept.at(-1)).toBe(long.at(-1));
    for (let i = 1; i < kept.length; i++) expect(kept[i].x).toBeGreaterThan(kept[i - 1].x);
  });

  it('keeps single-step spikes and dips', () => {
    const long = series(50_000, () => 1);
    long[12_345] = { x: 12_345, y: 90 };
    long[33_333] = { x: 33_333, y: -5 };
    const kept = decimate(long, 100);
    expect(kept).toContainEqual({ x: 12_345, y: 90 });
    expect(kept).toContainEqual({ x: 33_333, y: -5 });
  });

  it('drops values that are not finite', () => {
    const points = [
      { x: 0, y: 1 },
      { x: 1, y: Number.NaN },
      { x: 2, y: Number.POSITIVE_INFINITY },
      { x: Number.NaN, y: 2 },
      { x: 3, y: 0.5 },
    ];
    expect(decimate(points, 100)).toEqual([
      { x: 0, y: 1 },
      { x: 3, y: 0.5 },
    ]);
    const long = series(10_000, (i) => (i % 7 === 0 ? Number.NaN : i));
    expect(decimate(long, 50).every((p) => Number.isFinite(p.y))).toBe(true);
  });

  it('sorts points that arrive out of step order and handles a single step', () => {
    expect(decimate([{ x: 2, y: 1 }, { x: 1, y: 2 }], 10).map((p) => p.x)).toEqual([1, 2]);
    const same = Array.from({ length: 100 }, (_, i) => ({ x: 7, y: i }));
    expect(decimate(same, 5)).toEqual([same[0], same[99]]);
  });
});

describe('formatExponent', () => {
  it('writes learning rates compactly', () => {
    expect(formatExponent(2e-4)).toBe('2e-4');
    expect(formatExponent(0.00025)).toBe('2.5e-4');
    expect(formatExponent(0.00030000000000000003)).toBe('3e-4');
    expect(formatExponent(1.5)).toBe('1.5e0');
    expect(formatExponent(0)).toBe('0');
  });
});

describe('toPoints', () => {
  it('skips records without a value', () => {
    const records = [
      { step: 1, loss: 2 },
      { step: 2, loss: null },
      { step: 3, loss: 1 },
    ];
    expect(toPoints(records, (r) => r.step, (r) => r.loss)).toEqual([
      { x: 1, y: 2 },
      { x: 3, y: 1 },
    ]);
  });
});

describe('lineChart', () => {
  const options = { width: 400, height: 200, xLabel: 'step', yLabel: 'loss', integerX: true };

  it('labels both axes and draws each series, dots for sparse ones', () => {
    const plot = lineChart(
      [
        { name: 'training', points: series(3, (i) => 3 - i), color: 'var(--accent)', className: 'train' },
        { name: 'validation', points: [{ x: 2, y: 1.5 }], color: 'var(--warning)', dots: true, className: 'val' },
      ],
      options,
    );
    expect(tickLabels(plot, 'x')).toEqual(['0', '1', '2']);
    expect(tickLabels(plot, 'y').length).toBeGreaterThan(2);
    expect(plot.textContent).toContain('step');
    expect(plot.textContent).toContain('loss');
    expect(linePoints(plot, 'train')).toBe(3);
    expect(plot.querySelectorAll('g.val.dots circle')).toHaveLength(1);
    expect(plot.querySelector('g.train.line')?.getAttribute('stroke')).toBe('var(--accent)');
  });

  it('decimates long series to the width and drops non-positive values on a log scale', () => {
    const long = series(100_000, (i) => (i === 5 ? 0 : 1 + Math.sin(i / 100)));
    const plot = lineChart([{ name: 'training', points: long, color: 'red', className: 'train' }], {
      ...options,
      yType: 'log',
    });
    expect(linePoints(plot, 'train')).toBeLessThanOrEqual(4 * 400);
    expect(plot.scale('y')?.type).toBe('log');
    expect(Array.from(plot.scale('y')?.domain ?? [])[0]).toBeGreaterThan(0);
  });

  it('reports the point nearest the pointer, and again after a redraw', () => {
    const host = document.createElement('div');
    const seen: (FocusedPoint | null)[] = [];
    const points = series(5, (i) => i * i);
    const first = lineChart([{ name: 'training', points, color: 'red' }], options);
    showChart(host, first, (point) => seen.push(point));
    const [clientX, clientY] = pointAt(first, 3.2, 9);
    first.dispatchEvent(new MouseEvent('pointermove', { clientX, clientY }));
    expect(seen.at(-1)).toEqual({ series: 'training', x: 3, y: 9, color: 'red' });

    // A live chart redraws on every step; the readout stays where the pointer rests.
    const second = lineChart([{ name: 'training', points: [...points, { x: 5, y: 25 }], color: 'red' }], options);
    showChart(host, second, (point) => seen.push(point));
    expect(host.firstChild).toBe(second);
    expect(seen.at(-1)?.series).toBe('training');
  });
});

describe('scatterChart', () => {
  it('draws a labelled dot per run', () => {
    const plot = scatterChart(
      [
        { x: 95, y: 1.2, label: 'lora' },
        { x: 60, y: 1.4, label: 'qlora', color: 'var(--warning)' },
        { x: Number.NaN, y: 1, label: 'broken' },
      ],
      { width: 400, height: 240, xLabel: 'wall time (s)', yLabel: 'validation loss' },
    );
    expect(plot.querySelectorAll('g.points circle')).toHaveLength(2);
    expect(plot.textContent).toContain('qlora');
    expect(plot.textContent).not.toContain('broken');
    expect(tickLabels(plot, 'x').length).toBeGreaterThan(1);
  });
});
