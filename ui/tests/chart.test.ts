// Loss curves scaled into the chart's box.
import { describe, expect, it } from 'vitest';
import { scaleCurves } from '../src/lib/chart';

describe('scaleCurves', () => {
  it('maps the first and last points to the corners inside the padding', () => {
    const scaled = scaleCurves(
      [
        [
          { step: 1, value: 4 },
          { step: 3, value: 2 },
        ],
      ],
      100,
      50,
      10,
    );
    // Highest loss top-left, lowest bottom-right.
    expect(scaled.polylines[0]).toBe('10.0,10.0 90.0,40.0');
    expect([scaled.minStep, scaled.maxStep, scaled.minValue, scaled.maxValue]).toEqual([1, 3, 2, 4]);
  });

  it('shares both axes between series and skips values that are not numbers', () => {
    const scaled = scaleCurves(
      [
        [
          { step: 0, value: 1 },
          { step: 10, value: 0 },
        ],
        [
          { step: 10, value: Number.NaN },
          { step: 5, value: 0.5 },
        ],
      ],
      20,
      20,
      0,
    );
    expect(scaled.polylines[1]).toBe('10.0,10.0');
  });

  it('draws nothing without points and a flat line for a single value', () => {
    expect(scaleCurves([[]], 10, 10).polylines).toEqual(['']);
    const flat = scaleCurves([[{ step: 2, value: 3 }]], 10, 10, 0);
    expect(flat.polylines[0]).toBe('0.0,10.0');
  });
});
