// The wizard's choices against the defaults the backend serves (bindings/train-defaults.json):
// what a first run starts from, and the request the choices become.
import { describe, expect, it } from 'vitest';
import DEFAULTS from '../src/bindings/train-defaults.json';
import { LIMITS, TRAIN_METHODS, initialChoices, methodDefaults, trainRequest } from '../src/lib/train-wizard';

describe('train wizard', () => {
  it('offers every method the backend trains, in its order, with its name and default rate', () => {
    expect(TRAIN_METHODS.map((m) => m.id)).toEqual(['lora', 'qlora', 'soft-prompt', 'full', 'pretrain']);
    expect(TRAIN_METHODS.map((m) => m.label)).toEqual(DEFAULTS.methods.map((m) => m.label));
    expect(methodDefaults('full').lr_text).toBe('2e-5');
    expect(TRAIN_METHODS.find((m) => m.id === 'soft-prompt')?.hint).toContain('20 trained virtual tokens');
    expect(LIMITS.rank).toEqual([1, 512]);
  });

  it('starts from the served defaults and sends only the chosen method’s settings', () => {
    const choices = { ...initialChoices('soft-prompt'), model: 'm', data: ' /d.jsonl ' };
    expect(choices).toMatchObject({ maxSteps: 30, batchSize: 4, seqLen: 256, rank: 16, alpha: 32, virtualTokens: 20, preset: '10m' });
    const request = trainRequest(choices);
    expect(request).toMatchObject({ method: 'soft-prompt', virtual_tokens: 20, lr: null });
    expect(request).not.toHaveProperty('rank');
    expect(request).not.toHaveProperty('preset');
    expect(trainRequest({ ...initialChoices('lora'), model: 'm' })).toMatchObject({ rank: 16, alpha: 32 });
  });

  it('passes a typed learning rate on as a number, out of range too, for the backend to judge', () => {
    const base = initialChoices('lora');
    expect(trainRequest({ ...base, lr: '1e-4' }).lr).toBe(1e-4);
    expect(trainRequest({ ...base, lr: '5' }).lr).toBe(5);
    expect(trainRequest({ ...base, lr: '-1' }).lr).toBe(-1);
    expect(trainRequest({ ...base, lr: '  ' }).lr).toBeNull();
  });
});
