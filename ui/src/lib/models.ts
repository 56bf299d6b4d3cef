// Pure helpers for the Models screen: a download's progress, and checks on what the user typed.
import type { DownloadProgress } from '../bindings/DownloadProgress';
import { formatBytes } from './format';

/** 0–100 over all files of a pull; files of unknown size count as half done while they run. */
export function pullPercent(event: DownloadProgress | null): number {
  if (!event || event.file_count === 0) return 0;
  const within =
    event.total_bytes && event.total_bytes > 0 ? Math.min(1, event.downloaded_bytes / event.total_bytes) : 0.5;
  return Math.round((100 * (event.file_index + within)) / event.file_count);
}

/** "model.safetensors (2 of 3): 120.0 MiB of 270.0 MiB", or `waiting` before the first bytes. */
export function pullLabel(event: DownloadProgress | null, waiting = 'Asking the hub for the file list…'): string {
  if (!event) return waiting;
  const which = event.file_count > 1 ? ` (${event.file_index + 1} of ${event.file_count})` : '';
  const amount =
    event.total_bytes === null
      ? formatBytes(event.downloaded_bytes)
      : `${formatBytes(event.downloaded_bytes)} of ${formatBytes(event.total_bytes)}`;
  return `${event.file}${which}: ${amount}`;
}

/** A hub repository id the backend will accept ("owner/name"), or what is wrong with it. */
export function repoProblem(repo: string): string | null {
  const trimmed = repo.trim();
  if (trimmed.length === 0) return null;
  if (/^https?:\/\//.test(trimmed)) return 'Paste the id after huggingface.co/, e.g. HuggingFaceTB/SmolLM2-135M-Instruct.';
  const parts = trimmed.split('/');
  if (parts.length !== 2 || parts.some((p) => p.length === 0)) return 'Write it as owner/name.';
  if (/\s/.test(trimmed)) return 'A repository id has no spaces.';
  return null;
}

/** A hub URL pasted whole becomes its repository id. */
export function repoFromInput(text: string): string {
  const trimmed = text.trim();
  const match = /^https?:\/\/(?:www\.)?huggingface\.co\/([^/\s]+\/[^/\s?#]+)/.exec(trimmed);
  return match ? match[1] : trimmed;
}

/** A model name the registry accepts, or what is wrong with it (empty means "from the source"). */
export function modelNameProblem(name: string): string | null {
  if (name.length === 0) return null;
  if (!/^[A-Za-z0-9._-]+$/.test(name)) return "Use letters, digits, '-', '.' and '_'.";
  if (name.startsWith('.')) return 'A name cannot start with a dot.';
  return null;
}
