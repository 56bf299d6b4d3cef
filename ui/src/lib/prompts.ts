// Pure helpers for the prompt studio: the variables a template uses, the template the editor's
// fields make, the starting template for a new one, and reading an A/B test.
import type { MetricDiff } from '../bindings/MetricDiff';
import type { PromptTemplate } from '../bindings/PromptTemplate';
import type { PromptVersion } from '../bindings/PromptVersion';
import type { TemplateRef } from '../bindings/TemplateRef';

/** The variable chat fills with what the user types. */
export const INPUT_VARIABLE = 'input';

const PLACEHOLDER = /\{\{\s*([A-Za-z0-9_-]+)\s*\}\}/g;

/** Variable names used in `texts`, in order of first use. Malformed ones are the backend's to report. */
export function variablesIn(texts: string[]): string[] {
  const seen: string[] = [];
  for (const text of texts) {
    for (const match of text.matchAll(PLACEHOLDER)) {
      if (!seen.includes(match[1])) seen.push(match[1]);
    }
  }
  return seen;
}

export interface ExampleDraft {
  user: string;
  assistant: string;
}

export interface TemplateDraft {
  system: string;
  user: string;
  /** Test values by variable name; values of variables no longer used are kept while editing. */
  values: Record<string, string>;
  examples: ExampleDraft[];
}

/** The texts of a draft that may hold placeholders. */
function texts(draft: TemplateDraft): string[] {
  return [draft.system, draft.user, ...draft.examples.flatMap((e) => [e.user, e.assistant])];
}

/** The variables the draft uses, each with its test value. */
export function draftVariables(draft: TemplateDraft): { name: string; value: string }[] {
  return variablesIn(texts(draft)).map((name) => ({ name, value: draft.values[name] ?? '' }));
}

/** The template the backend renders and saves: only variables in use travel with it. */
export function toTemplate(draft: TemplateDraft): PromptTemplate {
  return {
    system: draft.system,
    user: draft.user,
    variables: draftVariables(draft),
    examples: draft.examples.map((e) => ({ user: e.user, assistant: e.assistant })),
  };
}

export function fromTemplate(template: PromptTemplate): TemplateDraft {
  return {
    system: template.system,
    user: template.user,
    values: Object.fromEntries(template.variables.map((v) => [v.name, v.value])),
    examples: template.examples.map((e) => ({ ...e })),
  };
}

/** What a new template starts as: a system line and the user's message as {{input}}. */
export function starterDraft(): TemplateDraft {
  return {
    system: 'You are a helpful assistant. Answer in {{style}}.',
    user: '{{input}}',
    values: { style: 'two short sentences', input: 'What is a LoRA adapter?' },
    examples: [],
  };
}

/** "v3 · politer tone" for a version picker. */
export function versionLabel(version: PromptVersion): string {
  return version.note ? `v${version.version} · ${version.note}` : `v${version.version}`;
}

/** How full the context is: "412 tokens · 5% of 8,192". */
export function tokenSummary(tokens: number, context: number): string {
  const share = context > 0 ? Math.max(tokens > 0 ? 1 : 0, Math.round((100 * tokens) / context)) : 0;
  return `${tokens.toLocaleString('en-US')} tokens · ${share}% of ${context.toLocaleString('en-US')}`;
}

/** A template name the backend will accept, or what is wrong with it. */
export function templateNameProblem(name: string): string | null {
  if (name.length === 0) return 'Give the template a name to save it.';
  if (name.length > 64) return 'Use at most 64 characters.';
  if (!/^[A-Za-z0-9._-]+$/.test(name)) return "Use letters, digits, '-', '_' and '.'.";
  if (name.startsWith('.')) return 'A name cannot start with a dot.';
  return null;
}

/** What an A/B test's metric says: which side its paired interval favours, or neither when the
 *  interval holds 0. */
export function abVerdict(metric: Pick<MetricDiff, 'difference' | 'higher_is_better'>): 'a' | 'b' | 'tie' {
  const { low, high, value } = metric.difference;
  if (low <= 0 && 0 <= high) return 'tie';
  return value > 0 === metric.higher_is_better ? 'b' : 'a';
}

/** An A/B side as the picker holds it: '' for no template, else a version number. */
export function abSide(name: string, choice: string): TemplateRef | null {
  return choice === '' ? null : { name, version: Number(choice) };
}
