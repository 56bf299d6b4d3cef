import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { startPolling } from '../src/lib/polling';

class FakeDocument extends EventTarget {
  hidden = false;
  setHidden(hidden: boolean) {
    this.hidden = hidden;
    this.dispatchEvent(new Event('visibilitychange'));
  }
}

beforeEach(() => vi.useFakeTimers());
afterEach(() => vi.useRealTimers());

describe('startPolling', () => {
  it('runs at once, then every interval, until stopped', async () => {
    const task = vi.fn().mockResolvedValue(undefined);
    const stop = startPolling(task, { intervalMs: 2000, document: new FakeDocument() });
    expect(task).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(2000);
    expect(task).toHaveBeenCalledTimes(2);
    await vi.advanceTimersByTimeAsync(4000);
    expect(task).toHaveBeenCalledTimes(4);
    stop();
    await vi.advanceTimersByTimeAsync(10000);
    expect(task).toHaveBeenCalledTimes(4);
  });

  it('pauses while the document is hidden and resumes when shown', async () => {
    const doc = new FakeDocument();
    const task = vi.fn().mockResolvedValue(undefined);
    const stop = startPolling(task, { intervalMs: 2000, document: doc });
    await vi.advanceTimersByTimeAsync(0);
    doc.setHidden(true);
    await vi.advanceTimersByTimeAsync(10000);
    expect(task).toHaveBeenCalledTimes(1);
    doc.setHidden(false);
    expect(task).toHaveBeenCalledTimes(2);
    stop();
  });

  it('keeps polling after a failed run and never overlaps runs', async () => {
    let resolveSlow: () => void = () => {};
    const task = vi
      .fn()
      .mockRejectedValueOnce(new Error('busy'))
      .mockImplementationOnce(() => new Promise<void>((resolve) => (resolveSlow = resolve)))
      .mockResolvedValue(undefined);
    const stop = startPolling(task, { intervalMs: 1000, document: new FakeDocument() });
    await vi.advanceTimersByTimeAsync(1000);
    expect(task).toHaveBeenCalledTimes(2);
    await vi.advanceTimersByTimeAsync(5000);
    expect(task).toHaveBeenCalledTimes(2);
    resolveSlow();
    await vi.advanceTimersByTimeAsync(1000);
    expect(task).toHaveBeenCalledTimes(3);
    stop();
  });
});
