// The method guide's advisor with a comparison in the workspace: it says what was measured on
// the user's own task, beside its general advice.
import { fireEvent, render, screen, within } from '@testing-library/svelte';
import { describe, expect, it, vi } from 'vitest';
import type { CompareReport } from '../src/bindings/CompareReport';
import { measuredFindings } from '../src/lib/compare';
import type { ScreenId } from '../src/lib/navigation';
import GuideScreen from '../src/screens/GuideScreen.svelte';
import DEMO from './helpers/compare-report.json';
import { settle } from './helpers/fake-chat-transport';

const client = vi.hoisted(() => ({
  listComparisons: vi.fn<() => Promise<CompareReport[]>>(),
}));

vi.mock('../src/lib/client', () => client);

const report = DEMO as unknown as CompareReport;

describe('measuredFindings', () => {
  it('names the best method per quality, format and facts, and the one that forgot least', () => {
    const findings = measuredFindings(report);
    expect(findings[0]).toMatch(/^Soft prompt did best on answer quality \(token-f1 0\.63, 95% interval 0\.56–0\.70\)/);
    // LoRA's interval (0.50–0.67) overlaps the soft prompt's: the sentence says so.
    expect(findings[0]).toContain('not clearly ahead of LoRA / QLoRA (0.58)');
    expect(findings[1]).toMatch(/^Prompt engineering did best on the required format \(regex 0\.89/);
    expect(findings[2]).toMatch(/^Retrieval \(RAG\) did best on the facts answers must contain \(contains-all 0\.21/);
    expect(findings[3]).toBe('LoRA / QLoRA kept the most general knowledge (forgetting probe -0.08)');
  });

  it('says nothing of methods that did not finish', () => {
    const failed: CompareReport = {
      ...report,
      methods: report.methods.map((m) => ({ ...m, status: 'failed' as const })),
    };
    expect(measuredFindings(failed)).toEqual([]);
  });
});

describe('the advisor with a comparison', () => {
  it('shows the measured findings beside the general advice and opens the comparison', async () => {
    client.listComparisons.mockResolvedValue([report]);
    const onOpen = vi.fn<(screen: ScreenId) => void>();
    render(GuideScreen, { props: { onOpen } });
    await settle();
    const measured = screen.getByLabelText('Measured on your task');
    expect(measured.textContent).toContain('brightloom-support');
    expect(measured.textContent).toContain('the advice above is general, these are your numbers');
    expect(within(measured).getAllByRole('listitem')).toHaveLength(4);
    await fireEvent.click(screen.getByRole('button', { name: 'Open the comparison' }));
    expect(onOpen).toHaveBeenCalledWith('compare');
  });

  it('gives the general advice alone when nothing was measured', async () => {
    client.listComparisons.mockResolvedValue([]);
    render(GuideScreen);
    await settle();
    expect(screen.queryByLabelText('Measured on your task')).toBeNull();
    expect(screen.getByText(/Start with/)).toBeTruthy();
  });
});
