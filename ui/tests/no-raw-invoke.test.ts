// @vitest-environment node
// Guards the IPC boundary: only lib/client.ts may talk to Tauri's core API directly (a type-only
// import, as the generated bindings/Commands.ts has for `Channel`, calls nothing).
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const SRC_DIR = fileURLToPath(new URL('../src', import.meta.url));
const CLIENT_FILE = join('lib', 'client.ts');

const RAW_INVOKE = /\binvoke\s*(<[^>]*>)?\s*\(/;
const CORE_IMPORT = /^import (?!type )[^;]*['"]@tauri-apps\/api\/core['"]/m;

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((entry) => {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return /\.(ts|svelte)$/.test(entry) ? [path] : [];
  });
}

describe('IPC boundary', () => {
  const files = sourceFiles(SRC_DIR);

  it('tells a value import of the core API from a type-only one', () => {
    expect(CORE_IMPORT.test("import { invoke } from '@tauri-apps/api/core';")).toBe(true);
    expect(CORE_IMPORT.test("import type { Channel } from '@tauri-apps/api/core';")).toBe(false);
  });

  it('finds the sources, including the client', () => {
    const names = files.map((file) => relative(SRC_DIR, file));
    expect(names).toContain(CLIENT_FILE);
    expect(names.some((name) => name.endsWith('.svelte'))).toBe(true);
    const client = readFileSync(join(SRC_DIR, CLIENT_FILE), 'utf8');
    expect(client).toMatch(CORE_IMPORT);
  });

  it('has no raw invoke or @tauri-apps/api/core import outside lib/client.ts', () => {
    const offenders = files
      .filter((file) => relative(SRC_DIR, file) !== CLIENT_FILE)
      .filter((file) => {
        const text = readFileSync(file, 'utf8');
        return text.includes('invoke(') || RAW_INVOKE.test(text) || CORE_IMPORT.test(text);
      })
      .map((file) => relative(SRC_DIR, file).split(sep).join('/'));
    expect(offenders).toEqual([]);
  });
});
