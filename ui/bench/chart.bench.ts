// Drawing the loss chart of a 100k-step run in jsdom: the whole component, and the plot alone
// (decimation and Plot's render). Run with `npm run bench`.
import { flushSync, mount, unmount } from 'svelte';
import { bench, describe } from 'vitest';
import type { MetricPoint } from '../src/bindings/MetricPoint';
import LossChart from '../src/components/runs/LossChart.svelte';
import { decimate, FALLBACK_WIDTH, lineChart, lossSeries, toPoints } from '../src/lib/chart';

const STEPS = 100_000;

// A noisy decaying loss with a validation every 1,000 steps.
const points: MetricPoint[] = [];
for (let step = 1; step <= STEPS; step++) {
  const loss = 0.5 + 2.5 * Math.exp(-step / 20_000) + 0.2 * Math.sin(step * 12.9898);
  points.push({ step, loss, val_loss: null, lr: 2e-4, tokens_per_s: 900 });
  if (step % 1000 === 0) points.push({ step, loss: null, val_loss: loss + 0.1, lr: null, tokens_per_s: null });
}

describe(`loss chart, ${STEPS.toLocaleString('en')} steps`, () => {
  bench('LossChart mounted and drawn', () => {
    const target = document.createElement('div');
    document.body.append(target);
    const chart = mount(LossChart, { target, props: { points } });
    flushSync();
    if (!target.querySelector('svg g.train.line path')) throw new Error('the chart was not drawn');
    unmount(chart);
    target.remove();
  });

  bench('plot only: series, decimation and Plot render', () => {
    const plot = lineChart(
      lossSeries(points),
      { width: FALLBACK_WIDTH, height: 220, xLabel: 'step', yLabel: 'loss', integerX: true },
    );
    document.body.append(plot);
    plot.remove();
  });

  bench('decimation alone', () => {
    decimate(toPoints(points, (p) => p.step, (p) => p.loss), FALLBACK_WIDTH);
  });
});
