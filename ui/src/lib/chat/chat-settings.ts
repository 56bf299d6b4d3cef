// Generation settings as the user edits them, and their translation into the
// backend's GenerationParams.
import type { ChatMessage } from '../../bindings/ChatMessage';
import type { ChatRequest } from '../../bindings/ChatRequest';
import type { GenerationParams } from '../../bindings/GenerationParams';
import type { ModelEntry } from '../../bindings/ModelEntry';
import type { RunListItem } from '../../bindings/RunListItem';

export interface ChatSettings {
  systemPrompt: string;
  temperature: number;
  topP: number;
  maxTokens: number;
  /** null (or an empty input) means a random seed on every answer. */
  seed: number | null | undefined;
}

export const TEMPERATURE_RANGE = { min: 0, max: 2, step: 0.05 } as const;
export const TOP_P_RANGE = { min: 0, max: 1, step: 0.01 } as const;
export const MAX_TOKENS_RANGE = { min: 1, max: 32768 } as const;

export function defaultChatSettings(): ChatSettings {
  return { systemPrompt: '', temperature: 0.3, topP: 0.9, maxTokens: 512, seed: null };
}

function clamp(value: number, min: number, max: number, fallback: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) return fallback;
  return Math.min(max, Math.max(min, value));
}

export function buildGenerationParams(settings: ChatSettings): GenerationParams {
  const defaults = defaultChatSettings();
  const seed = settings.seed;
  return {
    temperature: clamp(settings.temperature, TEMPERATURE_RANGE.min, TEMPERATURE_RANGE.max, defaults.temperature),
    top_k: null,
    top_p: clamp(settings.topP, TOP_P_RANGE.min, TOP_P_RANGE.max, defaults.topP),
    repetition_penalty: 1.1,
    seed:
      typeof seed === 'number' && Number.isSafeInteger(seed) && seed >= 0 ? seed : null,
    max_tokens: Math.round(
      clamp(settings.maxTokens, MAX_TOKENS_RANGE.min, MAX_TOKENS_RANGE.max, defaults.maxTokens),
    ),
    stop: [],
  };
}

/** The system prompt (when set) followed by the conversation. */
export function buildChatRequest(
  model: string,
  settings: ChatSettings,
  conversation: ChatMessage[],
): ChatRequest {
  const messages: ChatMessage[] = [];
  const systemPrompt = settings.systemPrompt.trim();
  if (systemPrompt) messages.push({ role: 'system', content: systemPrompt });
  messages.push(...conversation);
  return { model, messages, params: buildGenerationParams(settings) };
}

/** Whether the Chat screen can offer a model: a chat model whose files could be read. */
export function isChatModel(model: ModelEntry): boolean {
  return model.role === 'chat' && !model.problem;
}

/** The models the Chat screen offers, in cache order. */
export function chatModels(models: ModelEntry[]): ModelEntry[] {
  return models.filter(isChatModel);
}

/** Among the chat models: the preferred one when offered, else the first, else none (""). */
export function pickDefaultModel(models: ModelEntry[], preferred?: string | null): string {
  const offered = chatModels(models);
  if (preferred && offered.some((model) => model.name === preferred)) return preferred;
  return offered[0]?.name ?? '';
}

/** The runs chat can answer with: those that left a result. */
export function chatRuns(runs: RunListItem[]): RunListItem[] {
  return runs.filter((run) => run.has_artifact);
}

/** Whether a run's result stands in for the base model (a model folder) rather than riding on
 *  it (an adapter or a soft prompt). */
export function replacesBase(run: Pick<RunListItem, 'method'>): boolean {
  return run.method === 'full' || run.method === 'pretrain';
}

/** Makes a chat answer with `run`'s result: an adapter or soft prompt on the base model it was
 *  trained on, or the model a full fine-tune or pretraining saved. `null` goes back to the
 *  base model alone. */
export function answerWithRun(
  session: { model: string; adapter: string | null },
  run: Pick<RunListItem, 'id' | 'method' | 'model'> | null,
): void {
  session.adapter = run?.id ?? null;
  if (run && !replacesBase(run)) session.model = run.model;
}

/** Short one-line description shown on the collapsed settings panel. */
export function describeSettings(settings: ChatSettings): string {
  const params = buildGenerationParams(settings);
  const parts = [
    `temp ${params.temperature.toFixed(2)}`,
    `top-p ${params.top_p?.toFixed(2)}`,
    `${params.max_tokens} max tokens`,
  ];
  if (params.seed !== null) parts.push(`seed ${params.seed}`);
  if (settings.systemPrompt.trim()) parts.push('system prompt');
  return parts.join(' · ');
}
