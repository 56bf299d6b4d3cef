// The screens reachable from the sidebar. Add an entry here when a new screen ships.

export type ScreenId = 'home' | 'models' | 'chat' | 'prompts' | 'guide' | 'train' | 'runs' | 'knowledge' | 'compare';

export interface ScreenEntry {
  id: ScreenId;
  label: string;
  /** Name of an icon in components/Icon.svelte. */
  icon: 'home' | 'box' | 'chat' | 'braces' | 'guide' | 'train' | 'runs' | 'book' | 'columns';
}

export const SCREENS: readonly ScreenEntry[] = [
  { id: 'home', label: 'Home', icon: 'home' },
  { id: 'models', label: 'Models', icon: 'box' },
  { id: 'chat', label: 'Chat', icon: 'chat' },
  { id: 'prompts', label: 'Prompt studio', icon: 'braces' },
  { id: 'guide', label: 'Method guide', icon: 'guide' },
  { id: 'train', label: 'Train', icon: 'train' },
  { id: 'runs', label: 'Runs', icon: 'runs' },
  { id: 'knowledge', label: 'Knowledge', icon: 'book' },
  { id: 'compare', label: 'Compare', icon: 'columns' },
];

/** The sidebar's name for `id` ("Prompt studio"), used where text points at a screen. */
export function screenLabel(id: ScreenId): string {
  return SCREENS.find((entry) => entry.id === id)?.label ?? id;
}
