import { describe, expect, it } from 'vitest';
import { THEME_STORAGE_KEY, themeController } from '../src/lib/theme.svelte';

describe('theme', () => {
  it('follows the system by default (light when the system has no preference)', () => {
    expect(themeController.preference).toBe('system');
    themeController.apply();
    expect(document.documentElement.dataset.theme).toBe('light');
  });

  it('applies and persists an explicit choice', () => {
    themeController.setPreference('dark');
    expect(document.documentElement.dataset.theme).toBe('dark');
    expect(localStorage.getItem(THEME_STORAGE_KEY)).toBe('dark');

    themeController.setPreference('system');
    expect(themeController.theme).toBe('light');
    expect(localStorage.getItem(THEME_STORAGE_KEY)).toBe('system');
  });
});
