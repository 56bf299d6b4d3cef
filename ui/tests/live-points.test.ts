// The live series behind the run charts: events become points, a burst is published at once as
// one new array, and a finished run's metrics replace it.
import { describe, expect, it } from 'vitest';
import { LivePoints } from '../src/lib/live-points.svelte';

describe('LivePoints', () => {
  it('turns step and eval events into points and publishes a burst as one new array', async () => {
    const live = new LivePoints();
    const before = live.points;
    for (let step = 1; step <= 100_000; step++) {
      live.add({ kind: 'step', step, total_steps: 100_000, loss: 1 / step, lr: 1e-4, tokens_per_s: 90, elapsed_s: step, rss_bytes: null });
    }
    live.add({ kind: 'eval', step: 100_000, val_loss: 0.5 });
    live.add({ kind: 'started', run_id: 'ignored' });
    expect(live.points).toBe(before);
    await Promise.resolve();
    expect(live.points).not.toBe(before);
    expect(live.points).toHaveLength(100_001);
    expect(live.points[0]).toEqual({ step: 1, loss: 1, val_loss: null, lr: 1e-4, tokens_per_s: 90 });
    expect(live.points[100_000]).toEqual({ step: 100_000, loss: null, val_loss: 0.5, lr: null, tokens_per_s: null });

    live.set([{ step: 3, loss: 2, val_loss: null, lr: null, tokens_per_s: null }]);
    expect(live.points).toHaveLength(1);
  });
});
