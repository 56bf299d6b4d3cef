// Number formatting shared by every screen. All helpers accept null for "unknown" and
// render it as an em dash, so cards never show "NaN" or "null".
import type { ChatSummary } from '../bindings/ChatSummary';
import type { HardwareReport } from '../bindings/HardwareReport';
import type { StopReason } from '../bindings/StopReason';

export const UNKNOWN = '—';

const BYTE_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

function isKnown(value: number | null | undefined): value is number {
  return typeof value === 'number' && Number.isFinite(value);
}

/** 25125558681 -> "23.4 GiB"; 512 -> "512 B". Binary (1024-based) units, one decimal. */
export function formatBytes(bytes: number | null | undefined): string {
  if (!isKnown(bytes) || bytes < 0) return UNKNOWN;
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < BYTE_UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  // Rounding can produce "1024.0 MiB"; carry it over to the next unit.
  if (unit > 0 && Number(value.toFixed(1)) >= 1024 && unit < BYTE_UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${BYTE_UNITS[unit]}`;
}

/** "5.2 / 24.0 GiB" when both sides share a unit, else "512.0 MiB / 24.0 GiB". */
export function formatBytesUsage(used: number | null, total: number | null): string {
  const usedText = formatBytes(used);
  const totalText = formatBytes(total);
  const usedUnit = usedText.split(' ')[1];
  const totalUnit = totalText.split(' ')[1];
  if (usedUnit && usedUnit === totalUnit) return `${usedText.split(' ')[0]} / ${totalText}`;
  return `${usedText} / ${totalText}`;
}

/** Token throughput as a bare number: one decimal under 100, whole numbers above. */
export function formatRate(tokensPerSecond: number | null | undefined): string {
  if (!isKnown(tokensPerSecond) || tokensPerSecond < 0) return UNKNOWN;
  return tokensPerSecond >= 100 ? Math.round(tokensPerSecond).toString() : tokensPerSecond.toFixed(1);
}

/** 42.345 -> "42.3 tok/s". */
export function formatTokensPerSecond(tokensPerSecond: number | null | undefined): string {
  return `${formatRate(tokensPerSecond)} tok/s`;
}

/** 8192 -> "8,192". */
export function formatCount(value: number | null | undefined): string {
  if (!isKnown(value)) return UNKNOWN;
  return Math.round(value).toLocaleString('en-US');
}

/** 37.6 -> "38%". */
export function formatPercent(percent: number | null | undefined): string {
  if (!isKnown(percent)) return UNKNOWN;
  return `${Math.round(percent)}%`;
}

export function formatTemperature(celsius: number | null | undefined): string {
  if (!isKnown(celsius)) return UNKNOWN;
  return `${Math.round(celsius)} °C`;
}

/** "182 / 350 W", or just the known side. */
export function formatPower(drawWatts: number | null, limitWatts: number | null): string {
  const draw = isKnown(drawWatts) ? Math.round(drawWatts).toString() : null;
  const limit = isKnown(limitWatts) ? Math.round(limitWatts).toString() : null;
  if (draw && limit) return `${draw} / ${limit} W`;
  if (draw) return `${draw} W`;
  if (limit) return `${UNKNOWN} / ${limit} W`;
  return UNKNOWN;
}

/** Parameter counts: 134_515_008 -> "135M", 1_710_000_000 -> "1.7B". */
export function formatParameters(count: number | null | undefined): string {
  if (!isKnown(count) || count <= 0) return UNKNOWN;
  const scales: Array<[number, string]> = [
    [1e12, 'T'],
    [1e9, 'B'],
    [1e6, 'M'],
    [1e3, 'K'],
  ];
  for (const [scale, suffix] of scales) {
    if (count >= scale) {
      const scaled = count / scale;
      return `${scaled >= 10 ? Math.round(scaled) : Number(scaled.toFixed(1))}${suffix}`;
    }
  }
  return Math.round(count).toString();
}

/** Share of a whole as a fraction in 0..1, or null when the whole is unknown or zero. */
export function fractionOf(part: number | null | undefined, whole: number | null | undefined): number | null {
  if (!isKnown(part) || !isKnown(whole) || whole <= 0) return null;
  return Math.min(1, Math.max(0, part / whole));
}

/** "Driver 550.54.14 · CUDA 12.4", or "" when neither is known (no NVIDIA GPU). */
export function formatDriverLine(report: Pick<HardwareReport, 'driver_version' | 'cuda_version'>): string {
  return [
    report.driver_version ? `Driver ${report.driver_version}` : null,
    report.cuda_version ? `CUDA ${report.cuda_version}` : null,
  ]
    .filter(Boolean)
    .join(' · ');
}

const STOP_REASON_LABELS: Record<StopReason, string> = {
  eos: 'eos',
  stop_string: 'stop string',
  max_tokens: 'max tokens',
  context_full: 'context full',
  repetition: 'repeating itself',
  cancelled: 'cancelled',
};

export function formatStopReason(reason: StopReason): string {
  return STOP_REASON_LABELS[reason] ?? reason;
}

/** "42 tokens · prefill 813 tok/s · decode 35.1 tok/s · stopped: eos · on cuda:0" */
export function formatChatStats(summary: ChatSummary): string {
  const tokens = summary.generated_tokens === 1 ? '1 token' : `${formatCount(summary.generated_tokens)} tokens`;
  return [
    tokens,
    `prefill ${formatTokensPerSecond(summary.prefill_tokens_per_s)}`,
    `decode ${formatTokensPerSecond(summary.decode_tokens_per_s)}`,
    `stopped: ${formatStopReason(summary.stop_reason)}`,
    ...(summary.device ? [`on ${summary.device}`] : []),
  ].join(' · ');
}
