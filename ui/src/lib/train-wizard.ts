// The training wizard's choices, their defaults and the request they become. The defaults,
// method names and allowed ranges come from Rust (crates/train/src/recipe/defaults.rs, written into
// bindings/train-defaults.json), where every run's settings are checked: the wizard offers what
// the command line starts from, and a value out of range gets the same refusal from both.
import type { Method } from '../bindings/Method';
import type { TrainRequest } from '../bindings/TrainRequest';
import DEFAULTS from '../bindings/train-defaults.json';
import type { PretrainPreset } from './methods';

export interface MethodDefaults {
  method: Method;
  label: string;
  lr: number;
  /** The learning rate as the wizard shows it: 2e-4. */
  lr_text: string;
  rank?: number;
  alpha?: number;
  virtual_tokens?: number;
  preset?: string;
}

const METHODS = DEFAULTS.methods as MethodDefaults[];

/** The ranges the backend accepts: [lowest, highest]. */
export const LIMITS = {
  rank: DEFAULTS.limits.rank as [number, number],
  alphaMax: DEFAULTS.limits.alpha_max,
  virtualTokens: DEFAULTS.limits.virtual_tokens as [number, number],
  seqLen: DEFAULTS.limits.seq_len as [number, number],
};

/** The first run the wizard proposes: few steps on short sequences. */
export const WIZARD = DEFAULTS.wizard;

export function methodDefaults(method: Method): MethodDefaults {
  const found = METHODS.find((m) => m.method === method);
  if (!found) throw new Error(`train-defaults.json has no method '${method}'`);
  return found;
}

const HINTS: Record<Method, string> = {
  lora: 'Small adapters on every linear layer; the base stays in 32-bit floats.',
  qlora: 'The same adapters over a 4-bit base: the least memory.',
  'soft-prompt': `${methodDefaults('soft-prompt').virtual_tokens} trained virtual tokens before every input; no weight changes.`,
  full: 'Every weight trained: the most memory, the biggest change.',
  pretrain: 'A new model (1M to 120M parameters) and its tokenizer, from your plain text.',
};

/** The methods in the backend's order, each with its name and a line on what it does. */
export const TRAIN_METHODS: readonly { id: Method; label: string; hint: string }[] = METHODS.map((m) => ({
  id: m.method,
  label: m.label,
  hint: HINTS[m.method],
}));

/** Whether the method trains LoRA adapters (and so has a rank and alpha). */
export const hasAdapters = (method: Method): boolean => method === 'lora' || method === 'qlora';

/** Everything the wizard asks, as the user has set it so far. */
export interface TrainChoices {
  method: Method;
  model: string;
  data: string;
  maxSteps: number;
  batchSize: number;
  seqLen: number;
  /** Empty for the method's default. */
  lr: string;
  rank: number;
  alpha: number;
  virtualTokens: number;
  preset: PretrainPreset;
}

export function initialChoices(method: Method): TrainChoices {
  const lora = methodDefaults('lora');
  return {
    method,
    model: '',
    data: '',
    maxSteps: WIZARD.max_steps,
    batchSize: WIZARD.batch_size,
    seqLen: WIZARD.seq_len,
    lr: '',
    rank: lora.rank ?? 16,
    alpha: lora.alpha ?? 32,
    virtualTokens: methodDefaults('soft-prompt').virtual_tokens ?? 20,
    preset: (methodDefaults('pretrain').preset ?? '10m') as PretrainPreset,
  };
}

/** The request the choices become; settings the method does not have are left out. */
export function trainRequest(c: TrainChoices): TrainRequest {
  const rate = Number.parseFloat(c.lr);
  return {
    method: c.method,
    model: c.model,
    data: c.data,
    max_steps: c.maxSteps,
    batch_size: c.batchSize,
    seq_len: c.seqLen,
    // Any number goes to the backend, which refuses one out of range in its own words.
    lr: c.lr.trim() && Number.isFinite(rate) ? rate : null,
    ...(hasAdapters(c.method) ? { rank: c.rank, alpha: c.alpha } : {}),
    ...(c.method === 'soft-prompt' ? { virtual_tokens: c.virtualTokens } : {}),
    ...(c.method === 'pretrain' ? { preset: c.preset } : {}),
  };
}
