// Training runs this app started or resumed, kept outside any screen: leaving the Train or Runs
// screen keeps each run's live chart, progress and Cancel, and any screen can pick them up again.
import type { ApiError } from '../bindings/ApiError';
import type { GpuInfo } from '../bindings/GpuInfo';
import type { MetricPoint } from '../bindings/MetricPoint';
import type { RunListItem } from '../bindings/RunListItem';
import type { TrainEvent } from '../bindings/TrainEvent';
import type { TrainRequest } from '../bindings/TrainRequest';
import { cancelTraining, resumeTraining, startTraining } from './client';
import { LivePoints } from './live-points.svelte';

export type StepEvent = Extract<TrainEvent, { kind: 'step' }>;

/** One run training in this app, with everything its screens show. */
export class TrainingJob {
  /** Known once the run folder is named (the backend's first event). */
  runId = $state<string | null>(null);
  readonly live = new LivePoints();
  last = $state<StepEvent | null>(null);
  /** The GPU it trains on, as last read (GPU runs only). */
  gpu = $state<GpuInfo | null>(null);
  running = $state(true);
  cancelling = $state(false);
  finished = $state<RunListItem | null>(null);
  error = $state<ApiError | null>(null);
  /** Settles when the run ends, however it ends. */
  readonly done: Promise<void>;

  readonly percent = $derived(this.last ? Math.round((100 * this.last.step) / Math.max(1, this.last.total_steps)) : 0);
  /** Seconds left at the pace so far; elapsed_s counts time before a pause too, so it averages over every step. */
  readonly eta = $derived(
    this.last && this.last.step > 0
      ? Math.max(0, Math.round((this.last.elapsed_s / this.last.step) * (this.last.total_steps - this.last.step)))
      : null,
  );

  constructor(run: (onEvent: (event: TrainEvent) => void) => Promise<RunListItem>, runId: string | null, history: MetricPoint[]) {
    this.runId = runId;
    this.live.set(history);
    this.done = run((event) => this.#handle(event)).then(
      (finished) => {
        this.finished = finished;
      },
      (reason) => {
        this.error = reason as ApiError;
      },
    ).finally(() => {
      this.running = false;
      this.cancelling = false;
    });
  }

  #handle(event: TrainEvent): void {
    if (event.kind === 'started') this.runId = event.run_id;
    else if (event.kind === 'gpu') this.gpu = event.gpu;
    else {
      if (event.kind === 'step') this.last = event;
      this.live.add(event);
    }
  }

  /** Asks the run to stop at its next step; it keeps a checkpoint to resume from. */
  async cancel(): Promise<void> {
    if (!this.running || !this.runId) return;
    this.cancelling = true;
    try {
      await cancelTraining(this.runId);
    } catch (reason) {
      this.cancelling = false;
      this.error = reason as ApiError;
    }
  }
}

export class TrainingJobs {
  jobs = $state<TrainingJob[]>([]);
  readonly active = $derived(this.jobs.filter((job) => job.running));
  /** The run last started from the Train screen, which shows it again when reopened. */
  launched = $state<TrainingJob | null>(null);

  /** Starts a new run. */
  start(request: TrainRequest): TrainingJob {
    this.launched = this.#add(new TrainingJob((onEvent) => startTraining(request, onEvent), null, []));
    return this.launched;
  }

  /** Continues the stopped run `id`; `history` is its curve so far, which the chart goes on from. */
  resume(id: string, history: MetricPoint[]): TrainingJob {
    return this.#add(new TrainingJob((onEvent) => resumeTraining(id, onEvent), id, history));
  }

  /** The newest job of the run `id`, running or ended. */
  forRun(id: string): TrainingJob | undefined {
    return [...this.jobs].reverse().find((job) => job.runId === id);
  }

  #add(job: TrainingJob): TrainingJob {
    // Ended jobs leave the list (the runs list has how they ended); their screens keep them.
    this.jobs = [...this.jobs.filter((other) => other.running), job];
    return job;
  }
}

/** The app's training jobs. */
export const trainingJobs = new TrainingJobs();
