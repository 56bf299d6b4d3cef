import { render, screen } from '@testing-library/svelte';
import { describe, expect, it } from 'vitest';
import ModelList from '../src/components/models/ModelList.svelte';
import { smolModel } from './helpers/reports';

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

  it('tells the user how to add a model when the cache is empty', () => {
    render(ModelList, { models: [], modelsDir: '/home/me/.tunelab/models' });

    expect(screen.getByText('No models in the cache yet')).toBeTruthy();
    expect(screen.getByText('tunelab models add PATH')).toBeTruthy();
    expect(screen.getByText(/setup script/)).toBeTruthy();
    expect(screen.getByText('/home/me/.tunelab/models')).toBeTruthy();
  });
});
