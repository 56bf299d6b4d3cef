// Exporting a run from the Runs screen against a mocked backend: the forms its method allows,
// the request sent, progress and each check as it arrives, the result, Stop, and a failed check.
import { fireEvent, render, screen, within } from '@testing-library/svelte';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import type { CheckItem } from '../src/bindings/CheckItem';
import type { ExportEvent } from '../src/bindings/ExportEvent';
import type { ExportReport } from '../src/bindings/ExportReport';
import type { ExportRequest } from '../src/bindings/ExportRequest';
import ExportPanel from '../src/components/runs/ExportPanel.svelte';
import { DEFAULT_QUANT, QUANT_CHOICES, applyEvent, emptyProgress, exportRequest, progressPercent } from '../src/lib/export';
import { settle } from './helpers/fake-chat-transport';

const client = vi.hoisted(() => ({
  exportResult: vi.fn<(request: ExportRequest, onEvent: (event: ExportEvent) => void) => Promise<ExportReport>>(),
  cancelExport: vi.fn<(source: string) => Promise<void>>(),
}));

vi.mock('../src/lib/client', () => client);

const passed = (check: CheckItem['check'], detail: string): CheckItem => ({ check, passed: true, detail });

function report(request: ExportRequest, items: CheckItem[]): ExportReport {
  return {
    source: { run: request.source, method: 'lora', model: 'smollm2-135m-instruct' },
    format: request.format,
    quant: request.quant ?? null,
    dtype: null,
    folder: '/home/me/.local/share/tunelab/exports/lora-a-gguf-q4_k_m',
    files: [
      { name: 'Modelfile', bytes: 600 },
      { name: 'export.json', bytes: 3000 },
      { name: 'lora-a.q4_k_m.gguf', bytes: 105 * 1024 * 1024 },
    ],
    tensors: 272,
    modelfile: 'Modelfile',
    ollama_create: 'ollama create lora-a -f /home/me/.local/share/tunelab/exports/lora-a-gguf-q4_k_m/Modelfile',
    check: {
      passed: true,
      items,
      prompts: 3,
      max_logit_error: 0.4,
      logit_tolerance: 1.5,
      top1_agreement: 0.97,
      top1_tolerance: 0.75,
      greedy_matched: 40,
      greedy_compared: 48,
      max_weight_error: 0.05,
      weight_tolerance: 0.25,
      worst_weight: 'model.layers.0.self_attn.o_proj.weight',
    },
    wall_time_s: 12.5,
    created_at: 1,
  };
}

beforeEach(() => {
  client.exportResult.mockReset();
  client.cancelExport.mockReset().mockResolvedValue();
});

describe('export choices', () => {
  it('come from Rust, with q8_0 as the default', () => {
    expect(QUANT_CHOICES.map((q) => q.id)).toEqual(['f32', 'f16', 'q8_0', 'q4_0', 'q4_1', 'q4_k_m']);
    expect(DEFAULT_QUANT).toBe('q8_0');
  });

  it('send a quant and a Modelfile only with GGUF, and no folder when none is typed', () => {
    expect(exportRequest('run-1', { format: 'merged', quant: 'q4_0', ollama: true, out: '  ' })).toEqual({
      source: 'run-1',
      format: 'merged',
      quant: null,
      ollama: false,
      out: null,
    });
    expect(exportRequest('run-1', { format: 'gguf', quant: 'q4_0', ollama: true, out: '/tmp/x' }).quant).toBe('q4_0');
  });

  it('move the progress bar through writing and checking', () => {
    let p = applyEvent(emptyProgress(), { type: 'stage', stage: 'writing' });
    p = applyEvent(p, { type: 'written', done: 50, total: 100 });
    expect(progressPercent(p)).toBe(45);
    p = applyEvent(applyEvent(p, { type: 'stage', stage: 'checking' }), { type: 'checked', item: passed('tokenizer', 'same ids') });
    expect(progressPercent(p)).toBeGreaterThan(85);
  });
});

describe('ExportPanel', () => {
  it('exports a LoRA run as GGUF with a Modelfile, showing each check and the Ollama command', async () => {
    let emit: (event: ExportEvent) => void = () => {};
    let finish: (report: ExportReport) => void = () => {};
    client.exportResult.mockImplementation((_request, onEvent) => {
      emit = onEvent;
      return new Promise((resolve) => (finish = resolve));
    });
    render(ExportPanel, { source: 'lora-a', formats: ['gguf', 'merged', 'peft'] });
    const forms = within(screen.getByRole('group', { name: 'Form' }));
    expect(forms.getAllByRole('radio')).toHaveLength(3);
    await fireEvent.change(screen.getByRole('combobox', { name: 'GGUF weights' }), { target: { value: 'q4_k_m' } });
    await fireEvent.click(screen.getByRole('button', { name: 'Export GGUF' }));
    const request = client.exportResult.mock.calls[0][0];
    expect(request).toEqual({ source: 'lora-a', format: 'gguf', quant: 'q4_k_m', ollama: true, out: null });

    emit({ type: 'stage', stage: 'writing' });
    emit({ type: 'written', done: 136, total: 272 });
    await settle();
    expect(screen.getByText('Writing tensor 136 of 272')).toBeTruthy();
    await fireEvent.click(screen.getByRole('button', { name: 'Stop' }));
    expect(client.cancelExport).toHaveBeenCalledWith('lora-a');

    const items = [passed('tokenizer', 'the same token ids'), passed('end-of-turn', 'answers end at <|im_end|> (id 2)')];
    emit({ type: 'stage', stage: 'checking' });
    for (const item of items) emit({ type: 'checked', item });
    await settle();
    const checks = screen.getByRole('list', { name: 'Export checks' }).textContent;
    expect(checks).toContain('answers end at <|im_end|> (id 2)');
    expect(checks).toContain('end of turn');

    finish(report(request, items));
    await settle();
    const done = screen.getByRole('status').textContent;
    expect(done).toContain('/home/me/.local/share/tunelab/exports/lora-a-gguf-q4_k_m');
    expect(done).toContain('105.0 MiB');
    expect(done).toContain('ollama create lora-a -f');
    expect(screen.queryByRole('progressbar')).toBeNull();
  });

  it('offers a soft prompt only as a PEFT adapter', async () => {
    render(ExportPanel, { source: 'soft-a', formats: ['peft'] });
    expect(within(screen.getByRole('group', { name: 'Form' })).getAllByRole('radio')).toHaveLength(1);
    expect(screen.queryByRole('combobox', { name: 'GGUF weights' })).toBeNull();
    expect(screen.getByRole('button', { name: 'Export PEFT adapter' })).toBeTruthy();
  });

  it('names the check that failed, and keeps nothing', async () => {
    client.exportResult.mockImplementation(async (_request, onEvent) => {
      onEvent({ type: 'checked', item: { check: 'chat-template', passed: false, detail: 'the export has no chat template' } });
      throw { code: 'export_check_failed', message: 'the export did not match the model it came from, so it was not kept. chat template: the export has no chat template' };
    });
    render(ExportPanel, { source: 'full-a', formats: ['gguf', 'merged'] });
    await fireEvent.click(screen.getByRole('button', { name: 'Export GGUF' }));
    await settle();
    expect(screen.getByRole('alert').textContent).toContain('so it was not kept');
    expect(screen.getByRole('list', { name: 'Export checks' }).textContent).toContain('failed');
  });
});
