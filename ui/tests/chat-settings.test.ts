import { describe, expect, it } from 'vitest';
import type { ModelEntry } from '../src/bindings/ModelEntry';
import {
  buildGenerationParams,
  chatModels,
  defaultChatSettings,
  describeSettings,
  pickDefaultModel,
} from '../src/lib/chat/chat-settings';

function model(name: string, overrides: Partial<ModelEntry> = {}): ModelEntry {
  return {
    name,
    role: 'chat',
    format: 'gguf',
    path: `/models/${name}`,
    architecture: 'llama',
    quantization: 'Q8_0',
    parameters: null,
    context_length: 2048,
    size_bytes: 1,
    description: '',
    problem: null,
    files_owned: true,
    ...overrides,
  };
}

describe('chat settings', () => {
  it('maps defaults onto GenerationParams', () => {
    expect(buildGenerationParams(defaultChatSettings())).toEqual({
      temperature: 0.3,
      top_k: null,
      top_p: 0.9,
      repetition_penalty: 1.1,
      seed: null,
      max_tokens: 512,
      stop: [],
    });
  });

  it('clamps out-of-range values and drops an invalid seed', () => {
    const params = buildGenerationParams({
      systemPrompt: '',
      temperature: 5,
      topP: -1,
      maxTokens: 12.6,
      seed: -3,
    });
    expect(params).toMatchObject({ temperature: 2, top_p: 0, max_tokens: 13, seed: null });
    // An emptied number input binds to undefined or null.
    expect(buildGenerationParams({ ...defaultChatSettings(), maxTokens: undefined as unknown as number }).max_tokens).toBe(512);
    expect(buildGenerationParams({ ...defaultChatSettings(), seed: undefined }).seed).toBeNull();
  });

  it('describes the settings in one line', () => {
    expect(describeSettings({ ...defaultChatSettings(), seed: 42 })).toBe(
      'temp 0.30 · top-p 0.90 · 512 max tokens · seed 42',
    );
  });

  it('picks the preferred model when cached, else the first entry', () => {
    const models = [model('smollm2-135m-instruct'), model('qwen2.5-0.5b')];
    expect(pickDefaultModel(models)).toBe('smollm2-135m-instruct');
    expect(pickDefaultModel(models, 'qwen2.5-0.5b')).toBe('qwen2.5-0.5b');
    expect(pickDefaultModel(models, 'missing')).toBe('smollm2-135m-instruct');
    expect(pickDefaultModel([])).toBe('');
  });

  it('picks only chat models whose files can be read', () => {
    const embedding = model('all-minilm-l6-v2', { role: 'embedding' });
    const broken = model('qwen2.5-0.5b', { problem: 'Cannot read model.gguf: unexpected end of file' });
    const chat = model('smollm2-135m-instruct');

    expect(pickDefaultModel([embedding, broken, chat])).toBe('smollm2-135m-instruct');
    // A preferred model that is not offered falls back to the first chat model.
    expect(pickDefaultModel([embedding, broken, chat], 'all-minilm-l6-v2')).toBe('smollm2-135m-instruct');
    expect(pickDefaultModel([embedding, broken, chat], 'qwen2.5-0.5b')).toBe('smollm2-135m-instruct');
    expect(chatModels([embedding, broken, chat])).toEqual([chat]);
    // No chat model at all: nothing is picked, so the Chat screen shows its empty state.
    expect(pickDefaultModel([embedding, broken])).toBe('');
    expect(pickDefaultModel([embedding, broken], 'qwen2.5-0.5b')).toBe('');
  });
});
