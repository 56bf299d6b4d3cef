// Light/dark theme: follows the system by default; an explicit choice is kept in localStorage.

export type ThemePreference = 'system' | 'light' | 'dark';
export type Theme = 'light' | 'dark';

export const THEME_STORAGE_KEY = 'tunelab.theme';
const DARK_QUERY = '(prefers-color-scheme: dark)';

function readStoredPreference(): ThemePreference {
  try {
    const stored = globalThis.localStorage?.getItem(THEME_STORAGE_KEY);
    if (stored === 'light' || stored === 'dark' || stored === 'system') return stored;
  } catch {
    // Storage can be unavailable (privacy settings); fall back to the system theme.
  }
  return 'system';
}

function systemPrefersDark(): boolean {
  return typeof matchMedia === 'function' && matchMedia(DARK_QUERY).matches;
}

class ThemeController {
  preference = $state<ThemePreference>(readStoredPreference());
  #systemDark = $state(systemPrefersDark());

  get theme(): Theme {
    if (this.preference === 'system') return this.#systemDark ? 'dark' : 'light';
    return this.preference;
  }

  setPreference(preference: ThemePreference): void {
    this.preference = preference;
    try {
      globalThis.localStorage?.setItem(THEME_STORAGE_KEY, preference);
    } catch {
      // Not persisted; the choice still holds for this session.
    }
    this.apply();
  }

  /** Writes the current theme onto <html data-theme>, where the CSS variables key off it. */
  apply(): void {
    if (typeof document === 'undefined') return;
    document.documentElement.dataset.theme = this.theme;
  }

  /** Keeps following the system theme while the preference is "system". */
  watchSystem(): () => void {
    if (typeof matchMedia !== 'function') return () => {};
    const query = matchMedia(DARK_QUERY);
    const onChange = (event: MediaQueryListEvent) => {
      this.#systemDark = event.matches;
      this.apply();
    };
    query.addEventListener('change', onChange);
    return () => query.removeEventListener('change', onChange);
  }
}

export const themeController = new ThemeController();
