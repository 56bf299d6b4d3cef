// A live run's metric points for its charts. Kept as a raw (unproxied) array: a deep $state
// array made every read of a 100k-step series go through Svelte's proxy (about 1.2 s per chart
// draw against 50-70 ms). Events that arrive together are appended in one new array.
import type { MetricPoint } from '../bindings/MetricPoint';
import type { TrainEvent } from '../bindings/TrainEvent';

export class LivePoints {
  points = $state.raw<MetricPoint[]>([]);
  #pending: MetricPoint[] = [];

  /** Replaces the series, e.g. with a finished run's metrics.jsonl. */
  set(points: MetricPoint[]): void {
    this.#pending = [];
    this.points = points;
  }

  /** Appends a step's loss and learning rate, or a validation's loss; other events are ignored. */
  add(event: TrainEvent): void {
    if (event.kind === 'step') {
      this.#append({ step: event.step, loss: event.loss, val_loss: null, lr: event.lr, tokens_per_s: event.tokens_per_s });
    } else if (event.kind === 'eval') {
      this.#append({ step: event.step, loss: null, val_loss: event.val_loss, lr: null, tokens_per_s: null });
    }
  }

  #append(point: MetricPoint): void {
    if (this.#pending.length === 0) {
      queueMicrotask(() => {
        this.points = this.points.concat(this.#pending);
        this.#pending = [];
      });
    }
    this.#pending.push(point);
  }
}
