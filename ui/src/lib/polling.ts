// Runs a task now and then every intervalMs, never overlapping runs, and pauses while
// the document is hidden (window minimised, other app in front).

export interface PollingOptions {
  intervalMs: number;
  /** Defaults to the global document; tests may pass their own. */
  document?: Pick<Document, 'hidden' | 'addEventListener' | 'removeEventListener'>;
}

/** Starts polling; the returned function stops it for good. */
export function startPolling(task: () => Promise<unknown> | void, options: PollingOptions): () => void {
  const doc = options.document ?? (typeof document === 'undefined' ? undefined : document);
  let timer: ReturnType<typeof setTimeout> | null = null;
  let running = false;
  let stopped = false;

  const isHidden = () => doc?.hidden === true;

  const schedule = () => {
    if (stopped || isHidden() || timer !== null) return;
    timer = setTimeout(tick, options.intervalMs);
  };

  async function tick(): Promise<void> {
    timer = null;
    if (stopped || running || isHidden()) return;
    running = true;
    try {
      await task();
    } catch {
      // The task reports its own failures; polling goes on.
    } finally {
      running = false;
      schedule();
    }
  }

  const onVisibilityChange = () => {
    if (isHidden()) {
      if (timer !== null) clearTimeout(timer);
      timer = null;
    } else if (!running && timer === null) {
      void tick();
    }
  };

  doc?.addEventListener('visibilitychange', onVisibilityChange);
  void tick();

  return () => {
    stopped = true;
    if (timer !== null) clearTimeout(timer);
    timer = null;
    doc?.removeEventListener('visibilitychange', onVisibilityChange);
  };
}
