// The method guide: every method in the table, and the advisor's recommendations.
import { fireEvent, render, screen, within } from '@testing-library/svelte';
import { describe, expect, it, vi } from 'vitest';
import { advise, DATA_AMOUNTS, METHOD_GUIDE, NEEDS } from '../src/lib/methods';
import GuideScreen from '../src/screens/GuideScreen.svelte';

describe('advise', () => {
  it('sends knowledge to retrieval, rules to prompts and a voice to a soft prompt', () => {
    expect(advise('knowledge', 'documents').method).toBe('rag');
    expect(advise('behaviour', 'many').method).toBe('prompt');
    expect(advise('style', 'few').method).toBe('soft-prompt');
    expect(advise('task', 'many').method).toBe('lora');
    expect(advise('own-model', 'corpus').method).toBe('pretrain');
    expect(advise('deep', 'many').method).toBe('full');
  });

  it('adjusts to the data the user has', () => {
    expect(advise('task', 'none').method).toBe('prompt');
    expect(advise('task', 'documents').method).toBe('rag');
    expect(advise('deep', 'few').method).toBe('lora');
    expect(advise('own-model', 'many')).toMatchObject({ method: 'full', also: expect.stringContaining('plain text') });
  });

  it('answers every combination with a method from the table and a reason', () => {
    const ids = new Set(METHOD_GUIDE.map((m) => m.id));
    for (const need of NEEDS) {
      for (const data of DATA_AMOUNTS) {
        const advice = advise(need.id, data.id);
        expect(ids.has(advice.method)).toBe(true);
        expect(advice.reason.length).toBeGreaterThan(20);
      }
    }
  });
});

describe('GuideScreen', () => {
  it('lists the six methods and trains with the recommended one', async () => {
    const onTrain = vi.fn();
    render(GuideScreen, { onTrain });
    const rows = screen.getByRole('table', { name: 'Methods' }).querySelectorAll('tbody tr');
    expect(rows).toHaveLength(6);

    await fireEvent.change(screen.getByLabelText('Need'), { target: { value: 'style' } });
    await fireEvent.change(screen.getByLabelText('Data'), { target: { value: 'few' } });
    expect(screen.getByText(/Start with/).textContent).toContain('Soft prompt');
    await fireEvent.click(screen.getByRole('button', { name: 'Train with Soft prompt' }));
    expect(onTrain).toHaveBeenCalledWith('soft-prompt');

    await fireEvent.change(screen.getByLabelText('Need'), { target: { value: 'knowledge' } });
    expect(screen.getByText(/Start with/).textContent).toContain('Retrieval');
    expect(screen.queryByRole('button', { name: /Train with/ })).toBeNull();
    const advisor = within(screen.getByRole('region', { name: 'Advisor' }));
    expect(advisor.getByText(/^Knowledge: drop documents/)).toBeTruthy();
  });
});
