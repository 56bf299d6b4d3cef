// The screens reachable from the sidebar. Add an entry here when a new screen ships.

export type ScreenId = 'home' | 'chat' | 'guide' | 'train' | 'runs' | 'knowledge';

export interface ScreenEntry {
  id: ScreenId;
  label: string;
  /** Name of an icon in components/Icon.svelte. */
  icon: 'home' | 'chat' | 'guide' | 'train' | 'runs' | 'book';
}

export const SCREENS: readonly ScreenEntry[] = [
  { id: 'home', label: 'Home', icon: 'home' },
  { id: 'chat', label: 'Chat', icon: 'chat' },
  { id: 'guide', label: 'Method guide', icon: 'guide' },
  { id: 'train', label: 'Train', icon: 'train' },
  { id: 'runs', label: 'Runs', icon: 'runs' },
  { id: 'knowledge', label: 'Knowledge', icon: 'book' },
];
