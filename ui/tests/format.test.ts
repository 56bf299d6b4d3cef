import { describe, expect, it } from 'vitest';
import type { ChatSummary } from '../src/bindings/ChatSummary';
import {
  formatBytes,
  formatBytesUsage,
  formatChatStats,
  formatCount,
  formatDriverLine,
  formatParameters,
  formatPercent,
  formatPower,
  formatTemperature,
  formatTokensPerSecond,
  fractionOf,
} from '../src/lib/format';

const GiB = 1024 ** 3;

describe('formatBytes', () => {
  it('uses binary units with one decimal', () => {
    expect(formatBytes(23.4 * GiB)).toBe('23.4 GiB');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(270_000_000)).toBe('257.5 MiB');
    expect(formatBytes(2 * 1024 ** 4)).toBe('2.0 TiB');
  });

  it('keeps small values in bytes', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(512)).toBe('512 B');
  });

  it('carries a value that rounds up to the next unit', () => {
    expect(formatBytes(1024 * 1024 - 1)).toBe('1.0 MiB');
  });

  it('renders unknown or invalid sizes as a dash', () => {
    expect(formatBytes(null)).toBe('—');
    expect(formatBytes(Number.NaN)).toBe('—');
    expect(formatBytes(-1)).toBe('—');
  });

  it('shares the unit in a used/total pair when it can', () => {
    expect(formatBytesUsage(5.2 * GiB, 24 * GiB)).toBe('5.2 / 24.0 GiB');
    expect(formatBytesUsage(512 * 1024 ** 2, 24 * GiB)).toBe('512.0 MiB / 24.0 GiB');
  });
});

describe('token rates', () => {
  it('formats tok/s with one decimal under 100 and whole numbers above', () => {
    expect(formatTokensPerSecond(42.345)).toBe('42.3 tok/s');
    expect(formatTokensPerSecond(812.5)).toBe('813 tok/s');
    expect(formatTokensPerSecond(0)).toBe('0.0 tok/s');
    expect(formatTokensPerSecond(Number.POSITIVE_INFINITY)).toBe('— tok/s');
  });

  it('builds the stats line shown under an answer', () => {
    const summary: ChatSummary = {
      model: 'smollm2-135m-instruct',
      text: 'Paris.',
      prompt_tokens: 31,
      generated_tokens: 42,
      prefill_tokens_per_s: 812.5,
      decode_tokens_per_s: 35.06,
      stop_reason: 'eos',
      citations: [],
      grounded: null,
      device: null,
    };
    expect(formatChatStats(summary)).toBe('42 tokens · prefill 813 tok/s · decode 35.1 tok/s · stopped: eos');
    expect(formatChatStats({ ...summary, device: 'cuda:0' })).toBe(
      '42 tokens · prefill 813 tok/s · decode 35.1 tok/s · stopped: eos · on cuda:0',
    );
    expect(formatChatStats({ ...summary, generated_tokens: 1, stop_reason: 'max_tokens' })).toBe(
      '1 token · prefill 813 tok/s · decode 35.1 tok/s · stopped: max tokens',
    );
    expect(formatChatStats({ ...summary, stop_reason: 'context_full' })).toBe(
      '42 tokens · prefill 813 tok/s · decode 35.1 tok/s · stopped: context full',
    );
  });
});

describe('other readings', () => {
  it('formats counts, percents, temperatures and power', () => {
    expect(formatCount(8192)).toBe('8,192');
    expect(formatPercent(37.6)).toBe('38%');
    expect(formatPercent(null)).toBe('—');
    expect(formatTemperature(54.4)).toBe('54 °C');
    expect(formatPower(182.4, 350)).toBe('182 / 350 W');
    expect(formatPower(182.4, null)).toBe('182 W');
    expect(formatPower(null, null)).toBe('—');
  });

  it('abbreviates parameter counts', () => {
    expect(formatParameters(134_515_008)).toBe('135M');
    expect(formatParameters(1_710_000_000)).toBe('1.7B');
    expect(formatParameters(null)).toBe('—');
  });

  it('describes the GPU driver and CUDA versions when known', () => {
    expect(formatDriverLine({ driver_version: '550.54.14', cuda_version: '12.4' })).toBe(
      'Driver 550.54.14 · CUDA 12.4',
    );
    expect(formatDriverLine({ driver_version: '550.54.14', cuda_version: null })).toBe('Driver 550.54.14');
    expect(formatDriverLine({ driver_version: null, cuda_version: null })).toBe('');
  });

  it('computes bounded fractions', () => {
    expect(fractionOf(1, 4)).toBe(0.25);
    expect(fractionOf(5, 4)).toBe(1);
    expect(fractionOf(1, 0)).toBeNull();
  });
});
