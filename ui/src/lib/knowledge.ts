// Pure helpers for the Knowledge screen: progress of an add, what an add did, paths typed by
// the user, and short names for long source paths.
import type { AddProgress } from '../bindings/AddProgress';
import type { AddReport } from '../bindings/AddReport';

/** The file extensions a knowledge base reads, as the file picker and drop zone describe them. */
export const SUPPORTED_EXTENSIONS = ['md', 'markdown', 'txt', 'html', 'htm', 'pdf', 'docx', 'csv', 'json', 'jsonl'];

/** 0–100 for a progress bar: reading is the first tenth, embedding the rest, indexing full. */
export function progressPercent(event: AddProgress | null): number {
  if (!event) return 0;
  switch (event.stage) {
    case 'reading':
      return event.total === 0 ? 10 : Math.round((10 * event.done) / event.total);
    case 'embedding':
      return event.total === 0 ? 95 : 10 + Math.round((85 * event.done) / event.total);
    case 'indexing':
      return 97;
  }
}

/** One line saying where an add is. */
export function progressLabel(event: AddProgress | null): string {
  if (!event) return 'Starting…';
  switch (event.stage) {
    case 'reading':
      return event.total === 0
        ? 'Looking for documents…'
        : `Reading ${Math.min(event.done + 1, event.total)} of ${event.total}${event.file ? `: ${shortName(event.file)}` : ''}`;
    case 'embedding':
      return `Embedding chunk ${event.done} of ${event.total}`;
    case 'indexing':
      return 'Updating the search indexes…';
  }
}

/** "3 added, 1 replaced, 7 unchanged, 1 failed · 42 chunks in 3.1 s". */
export function reportSummary(report: AddReport): string {
  const parts = [`${report.added.length} added`];
  if (report.replaced.length > 0) parts.push(`${report.replaced.length} replaced`);
  if (report.unchanged.length > 0) parts.push(`${report.unchanged.length} unchanged`);
  if (report.failed.length > 0) parts.push(`${report.failed.length} failed`);
  return `${parts.join(', ')} · ${report.chunks_added} chunks in ${report.seconds.toFixed(1)} s`;
}

/** Paths typed or pasted into the box: one per line, blank lines and surrounding quotes dropped. */
export function splitPaths(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((line) => line.trim().replace(/^(['"])(.*)\1$/, '$2'))
    .filter((line) => line.length > 0);
}

/** The last two parts of a path ("engineering/battery-testing.md"), for tight spaces. */
export function shortName(path: string): string {
  const parts = path.split(/[\\/]/).filter((p) => p.length > 0);
  return parts.slice(-2).join('/');
}

/** A knowledge base name the backend will accept, or a message saying what is wrong. */
export function nameProblem(name: string): string | null {
  if (name.length === 0) return 'Give the knowledge base a name.';
  if (name.length > 64) return 'Use at most 64 characters.';
  if (!/^[A-Za-z0-9][A-Za-z0-9_-]*$/.test(name)) return 'Use letters, digits, "-" and "_", starting with a letter or digit.';
  return null;
}

/** Words too common to be worth marking in a search hit. */
const UNMARKED = new Set([
  'the', 'and', 'for', 'are', 'was', 'were', 'with', 'what', 'when', 'where', 'which', 'who', 'how', 'does',
  'did', 'can', 'you', 'your', 'our', 'this', 'that', 'from', 'have', 'has', 'get', 'any', 'not', 'but',
]);

/**
 * `text` cut into pieces, with `marked` set on words of the query (three letters or more, common
 * words left out; a query word also marks longer words it starts, "return" in "returns").
 */
export function highlight(text: string, query: string): { text: string; marked: boolean }[] {
  const words = [
    ...new Set(
      query
        .toLowerCase()
        .split(/[^\p{L}\p{N}]+/u)
        .filter((w) => w.length >= 3 && !UNMARKED.has(w)),
    ),
  ];
  if (words.length === 0) return [{ text, marked: false }];
  const escaped = words.map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).sort((a, b) => b.length - a.length);
  const pattern = new RegExp(`(?<![\\p{L}\\p{N}])(?:${escaped.join('|')})[\\p{L}\\p{N}]*`, 'giu');
  const pieces: { text: string; marked: boolean }[] = [];
  let last = 0;
  for (const match of text.matchAll(pattern)) {
    const start = match.index ?? 0;
    if (start > last) pieces.push({ text: text.slice(last, start), marked: false });
    pieces.push({ text: match[0], marked: true });
    last = start + match[0].length;
  }
  if (last < text.length) pieces.push({ text: text.slice(last), marked: false });
  return pieces;
}
