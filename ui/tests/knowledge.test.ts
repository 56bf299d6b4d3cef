import { describe, expect, it } from 'vitest';
import { nameProblem, progressLabel, progressPercent, reportSummary, shortName, splitPaths, highlight } from '../src/lib/knowledge';

describe('add progress', () => {
  it('moves from reading through embedding to indexing', () => {
    expect(progressPercent(null)).toBe(0);
    expect(progressPercent({ stage: 'reading', done: 1, total: 2, file: '/a/b.md' })).toBe(5);
    expect(progressPercent({ stage: 'embedding', done: 0, total: 100 })).toBe(10);
    expect(progressPercent({ stage: 'embedding', done: 100, total: 100 })).toBe(95);
    expect(progressPercent({ stage: 'indexing' })).toBe(97);
  });

  it('says which file and chunk it is on', () => {
    expect(progressLabel({ stage: 'reading', done: 0, total: 3, file: '/docs/engineering/tests.md' })).toBe(
      'Reading 1 of 3: engineering/tests.md',
    );
    expect(progressLabel({ stage: 'embedding', done: 40, total: 59 })).toBe('Embedding chunk 40 of 59');
    expect(progressLabel({ stage: 'indexing' })).toBe('Updating the search indexes…');
  });
});

describe('add report', () => {
  it('counts only what happened', () => {
    expect(
      reportSummary({
        added: ['/a.md', '/b.md'],
        replaced: [],
        unchanged: ['/c.md'],
        failed: [{ path: '/d.pdf', error: 'broken' }],
        chunks_added: 12,
        chunks_removed: 0,
        seconds: 1.234,
        embed_seconds: 1,
      }),
    ).toBe('2 added, 1 unchanged, 1 failed · 12 chunks in 1.2 s');
  });
});

describe('paths and names', () => {
  it('splits pasted paths and drops quotes', () => {
    expect(splitPaths(' /docs/a.md \n\n"/My Files/b.pdf"\r\n')).toEqual(['/docs/a.md', '/My Files/b.pdf']);
  });

  it('shortens long paths', () => {
    expect(shortName('/home/me/docs/engineering/battery.md')).toBe('engineering/battery.md');
    expect(shortName('C:\\Users\\me\\notes.txt')).toBe('me/notes.txt');
  });

  it('checks names the way the backend does', () => {
    expect(nameProblem('brightloom')).toBeNull();
    expect(nameProblem('team-docs_2')).toBeNull();
    expect(nameProblem('')).toContain('name');
    expect(nameProblem('has space')).toContain('letters');
    expect(nameProblem('-lead')).toContain('starting');
  });
});

describe('highlight', () => {
  it('marks the query words, longer words they start, and no common words', () => {
    const pieces = highlight('Returns within 30 days: return the bike to any store.', 'How do I return a bike?');
    expect(pieces.filter((p) => p.marked).map((p) => p.text)).toEqual(['Returns', 'return', 'bike']);
    expect(pieces.map((p) => p.text).join('')).toBe('Returns within 30 days: return the bike to any store.');
  });

  it('leaves text alone when the query has nothing to mark', () => {
    expect(highlight('Any text (with brackets).', 'how do I')).toEqual([{ text: 'Any text (with brackets).', marked: false }]);
    expect(highlight('a+b [x]', 'a+b? [x]').every((p) => !p.marked)).toBe(true);
  });
});
