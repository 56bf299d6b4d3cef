// The export panel's logic: which forms a run offers, the GGUF recipes and check names (from
// Rust, through bindings/export-choices.json), the request it sends and the progress the events
// describe.
import type { CheckItem } from '../bindings/CheckItem';
import type { ExportEvent } from '../bindings/ExportEvent';
import type { ExportFormat } from '../bindings/ExportFormat';
import type { ExportRequest } from '../bindings/ExportRequest';
import type { ExportStage } from '../bindings/ExportStage';
import CHOICES from '../bindings/export-choices.json';
import type { CheckKind } from '../bindings/CheckKind';

export interface QuantChoice {
  id: string;
  label: string;
}

/** Every GGUF recipe Tunelab writes, and the one it uses unless told. */
export const QUANT_CHOICES: QuantChoice[] = CHOICES.quants;
export const DEFAULT_QUANT: string = CHOICES.default_quant;

/** A check's name in words. */
export function checkLabel(check: CheckKind): string {
  return CHOICES.checks.find((c) => c.id === check)?.label ?? check;
}

export const FORMAT_LABELS: Record<ExportFormat, { name: string; detail: string }> = {
  gguf: { name: 'GGUF', detail: 'one file for llama.cpp, Ollama and LM Studio' },
  merged: { name: 'Merged folder', detail: 'a Hugging Face model folder with the result folded into the weights' },
  peft: { name: 'PEFT adapter', detail: 'the adapter alone, for transformers + PEFT on the same base model' },
};

/** What the panel asks for. */
export interface ExportChoice {
  format: ExportFormat;
  quant: string;
  ollama: boolean;
  /** A folder to create, or empty for the workspace's exports folder. */
  out: string;
}

export function initialChoice(formats: ExportFormat[]): ExportChoice {
  return { format: formats[0] ?? 'gguf', quant: DEFAULT_QUANT, ollama: true, out: '' };
}

export function exportRequest(source: string, choice: ExportChoice): ExportRequest {
  const gguf = choice.format === 'gguf';
  const out = choice.out.trim();
  return {
    source,
    format: choice.format,
    quant: gguf ? choice.quant : null,
    ollama: gguf && choice.ollama,
    out: out === '' ? null : out,
  };
}

/** Where an export stands, from the events seen so far. */
export interface ExportProgress {
  stage: ExportStage | null;
  written: number;
  total: number;
  checks: CheckItem[];
}

export function emptyProgress(): ExportProgress {
  return { stage: null, written: 0, total: 0, checks: [] };
}

export function applyEvent(progress: ExportProgress, event: ExportEvent): ExportProgress {
  switch (event.type) {
    case 'stage':
      return { ...progress, stage: event.stage };
    case 'written':
      return { ...progress, written: event.done, total: event.total };
    case 'checked':
      return { ...progress, checks: [...progress.checks, event.item] };
  }
}

/** 0–100: loading counts for little, writing for most, checking for the rest. */
export function progressPercent(progress: ExportProgress): number {
  switch (progress.stage) {
    case null:
    case 'loading':
      return 2;
    case 'writing':
      return 5 + (progress.total === 0 ? 0 : (80 * progress.written) / progress.total);
    case 'checking':
      return 85 + Math.min(15, progress.checks.length * 2.5);
  }
}

export function stageText(progress: ExportProgress): string {
  switch (progress.stage) {
    case null:
    case 'loading':
      return 'Loading the model…';
    case 'writing':
      return `Writing tensor ${progress.written} of ${progress.total || '…'}`;
    case 'checking':
      return 'Reloading the export and comparing it with the model…';
  }
}
