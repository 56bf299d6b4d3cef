import { render, screen } from '@testing-library/svelte';
import { describe, expect, it } from 'vitest';
import ModelList from '../src/components/models/ModelList.svelte';
import { BROKEN_MODEL_PROBLEM, brokenModel, embeddingModel, smolModel } from './helpers/reports';

describe('ModelList', () => {
  it('lists name, architecture, quantization, size and context length', () => {
    render(ModelList, { models: [smolModel()] });

    expect(screen.getByText('smollm2-135m-instruct')).toBeTruthy();
    expect(screen.getByText('llama')).toBeTruthy();
    expect(screen.getByText('Q8_0')).toBeTruthy();
    expect(screen.getByText('138.1 MiB')).toBeTruthy();
    expect(screen.getByText('8,192')).toBeTruthy();
    expect(screen.getByText('135M params')).toBeTruthy();
  });

  it('tags every model with its role and shows its description', () => {
    render(ModelList, { models: [smolModel(), embeddingModel()] });

    expect(screen.getByText('chat')).toBeTruthy();
    expect(screen.getByText('embedding')).toBeTruthy();
    expect(screen.getByText('all-minilm-l6-v2')).toBeTruthy();
    const description = screen.getByText('Sentence embeddings for search.');
    expect(description.getAttribute('title')).toBe('Sentence embeddings for search.');
    expect(screen.queryByRole('alert')).toBeNull();
  });

  it('keeps a model whose files cannot be read, with its problem under it', () => {
    render(ModelList, { models: [brokenModel(), smolModel()] });

    expect(screen.getByText('qwen2.5-0.5b-instruct')).toBeTruthy();
    const problem = screen.getByText(BROKEN_MODEL_PROBLEM);
    expect(problem.closest('.problem')).toBeTruthy();
    expect(screen.getAllByText(/unexpected end of file/)).toHaveLength(1);
    expect(screen.getAllByText('chat')).toHaveLength(2);
  });

  it('tells the user how to add a model when the cache is empty', () => {
    render(ModelList, { models: [], modelsDir: '/home/me/.tunelab/models' });

    expect(screen.getByText('No models in the cache yet')).toBeTruthy();
    expect(screen.getByText('tunelab models add PATH')).toBeTruthy();
    expect(screen.getByText('tunelab models defaults')).toBeTruthy();
    expect(screen.getByText('/home/me/.tunelab/models')).toBeTruthy();
  });

  it('keeps only name, role and size when compact, with problems still shown', () => {
    render(ModelList, { models: [smolModel(), brokenModel()], compact: true });

    expect(screen.getAllByRole('columnheader').map((cell) => cell.textContent)).toEqual(['Name', 'Size']);
    expect(screen.getByText('smollm2-135m-instruct')).toBeTruthy();
    expect(screen.getAllByText('chat')).toHaveLength(2);
    expect(screen.getByText('138.1 MiB')).toBeTruthy();
    expect(screen.queryByText('llama')).toBeNull();
    expect(screen.queryByText('GGUF')).toBeNull();
    expect(screen.queryByText('Small instruction-tuned chat model, fast on any CPU.')).toBeNull();
    expect(screen.getByText(BROKEN_MODEL_PROBLEM)).toBeTruthy();
  });
});
