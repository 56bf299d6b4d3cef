// Helpers of the Models screen: download progress and checks on typed repository ids and names.
import { describe, expect, it } from 'vitest';
import { modelNameProblem, pullLabel, pullPercent, repoFromInput, repoProblem } from '../src/lib/models';

describe('pullPercent', () => {
  it('spreads the bar over the files of a pull', () => {
    expect(pullPercent(null)).toBe(0);
    const first = { file: 'config.json', file_index: 0, file_count: 4, downloaded_bytes: 0, total_bytes: 100 };
    expect(pullPercent(first)).toBe(0);
    expect(pullPercent({ ...first, file_index: 2, downloaded_bytes: 50 })).toBe(63);
    expect(pullPercent({ ...first, file_index: 3, downloaded_bytes: 100 })).toBe(100);
  });

  it('counts a file of unknown size as half done while it runs', () => {
    expect(pullPercent({ file: 'x.gguf', file_index: 0, file_count: 1, downloaded_bytes: 7, total_bytes: null })).toBe(50);
  });
});

describe('pullLabel', () => {
  it('names the file, its place among the files and the bytes so far', () => {
    expect(pullLabel(null)).toMatch(/file list/);
    expect(
      pullLabel({
        file: 'model.safetensors',
        file_index: 1,
        file_count: 3,
        downloaded_bytes: 120 * 1024 * 1024,
        total_bytes: 270 * 1024 * 1024,
      }),
    ).toBe('model.safetensors (2 of 3): 120.0 MiB of 270.0 MiB');
    expect(pullLabel({ file: 'm.gguf', file_index: 0, file_count: 1, downloaded_bytes: 1024, total_bytes: null })).toBe(
      'm.gguf: 1.0 KiB',
    );
  });
});

describe('repository ids', () => {
  it('accepts owner/name and turns a pasted hub link into one', () => {
    expect(repoProblem('HuggingFaceTB/SmolLM2-360M-Instruct')).toBeNull();
    expect(repoFromInput(' https://huggingface.co/Qwen/Qwen2.5-0.5B-Instruct-GGUF/tree/main ')).toBe(
      'Qwen/Qwen2.5-0.5B-Instruct-GGUF',
    );
    expect(repoProblem('')).toBeNull();
  });

  it('says what is wrong with anything else', () => {
    expect(repoProblem('SmolLM2')).toMatch(/owner\/name/);
    expect(repoProblem('a/b/c')).toMatch(/owner\/name/);
    expect(repoProblem('https://example.com/a/b')).toMatch(/huggingface.co/);
    expect(repoProblem('a /b')).toMatch(/spaces/);
  });
});

describe('modelNameProblem', () => {
  it('takes what the registry takes', () => {
    expect(modelNameProblem('')).toBeNull();
    expect(modelNameProblem('qwen2.5-0.5b_q4')).toBeNull();
    expect(modelNameProblem('my model')).toMatch(/letters/);
    expect(modelNameProblem('.hidden')).toMatch(/dot/);
  });
});
