// Helpers of the prompt studio.
import { describe, expect, it } from 'vitest';
import { draftVariables, fromTemplate, templateNameProblem, toTemplate, tokenSummary, variablesIn } from '../src/lib/prompts';

describe('variablesIn', () => {
  it('finds each name once, in order of first use, spaces allowed inside the braces', () => {
    expect(variablesIn(['Hi {{ name }}, about {{topic}}', '{{name}} again, {{input}}'])).toEqual([
      'name',
      'topic',
      'input',
    ]);
    expect(variablesIn(['no variables', '{single}', '{{ two words }}'])).toEqual([]);
  });
});

describe('drafts', () => {
  it('send only the variables in use, and keep values of removed ones while editing', () => {
    const draft = {
      system: 'For {{company}}',
      user: '{{input}}',
      values: { company: 'Brightloom', input: 'hi', old: 'kept' },
      examples: [{ user: 'Q {{x}}', assistant: 'A' }],
    };
    expect(draftVariables(draft)).toEqual([
      { name: 'company', value: 'Brightloom' },
      { name: 'input', value: 'hi' },
      { name: 'x', value: '' },
    ]);
    const template = toTemplate(draft);
    expect(template.variables.map((v) => v.name)).toEqual(['company', 'input', 'x']);
    expect(fromTemplate(template).values).toEqual({ company: 'Brightloom', input: 'hi', x: '' });
  });
});

describe('tokenSummary and names', () => {
  it('says how full the context is', () => {
    expect(tokenSummary(412, 8192)).toBe('412 tokens · 5% of 8,192');
    expect(tokenSummary(3, 8192)).toBe('3 tokens · 1% of 8,192');
  });

  it('checks template names as the backend does', () => {
    expect(templateNameProblem('')).toMatch(/name/);
    expect(templateNameProblem('support-v2.b')).toBeNull();
    expect(templateNameProblem('a b')).toMatch(/letters/);
    expect(templateNameProblem('.x')).toMatch(/dot/);
  });
});
