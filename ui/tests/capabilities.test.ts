// What the app says it can do must be true of this build: every method the guide lists opens a
// screen the app has, nothing is promised as coming, and GPU text follows AppInfo.cuda_build.
import { fireEvent, render, screen, within } from '@testing-library/svelte';
import { describe, expect, it, vi } from 'vitest';
// App.svelte's source, to check that it renders every screen the sidebar lists.
import APP_SOURCE from '../src/App.svelte?raw';
import GpuCard from '../src/components/hardware/GpuCard.svelte';
import HardwarePanel from '../src/components/hardware/HardwarePanel.svelte';
import NoGpuCard from '../src/components/hardware/NoGpuCard.svelte';
import { METHOD_GUIDE, placeText, pretrainPresets, trainingDevice } from '../src/lib/methods';
import { SCREENS, type ScreenId } from '../src/lib/navigation';
import GuideScreen from '../src/screens/GuideScreen.svelte';
import { cpuOnlyReport, gpuReport, NO_GPU_NOTE } from './helpers/reports';

const SCREEN_IDS = new Set<ScreenId>(SCREENS.map((entry) => entry.id));

describe('the method guide', () => {
  it('only names screens the sidebar lists and the app renders', () => {
    for (const id of SCREEN_IDS) expect(APP_SOURCE, `App.svelte renders '${id}'`).toContain(`screen === '${id}'`);
    for (const method of METHOD_GUIDE) {
      const screens = method.availability.flatMap((place) => (place.screen === null ? [] : [place.screen]));
      expect(screens.length, `${method.name} opens a screen`).toBeGreaterThan(0);
      for (const id of screens) expect(SCREEN_IDS.has(id), `${method.name}: '${id}' is a screen`).toBe(true);
      if (method.trains) expect(screens, `${method.name} opens Train`).toContain('train');
    }
  });

  it('opens the screen of every place it names', async () => {
    const onOpen = vi.fn<(screen: ScreenId) => void>();
    const onTrain = vi.fn();
    render(GuideScreen, { onOpen, onTrain });
    const table = within(screen.getByRole('table', { name: 'Methods' }));
    for (const method of METHOD_GUIDE) {
      for (const place of method.availability) {
        if (place.screen === null) continue;
        onOpen.mockClear();
        onTrain.mockClear();
        await fireEvent.click(table.getByRole('button', { name: `${SCREENS.find((s) => s.id === place.screen)?.label} for ${method.name}` }));
        if (place.screen === 'train') expect(onTrain).toHaveBeenCalledWith(method.trains);
        else expect(onOpen).toHaveBeenCalledWith(place.screen);
      }
    }
  });

  it('recommends the prompt studio and knowledge bases with buttons that open them', async () => {
    const onOpen = vi.fn<(screen: ScreenId) => void>();
    render(GuideScreen, { onOpen });
    await fireEvent.change(screen.getByLabelText('Need'), { target: { value: 'behaviour' } });
    const advisor = within(screen.getByRole('region', { name: 'Advisor' }));
    expect(advisor.getByText(/^Prompt studio: templates with/)).toBeTruthy();
    await fireEvent.click(advisor.getByRole('button', { name: 'Open Prompt studio' }));
    expect(onOpen).toHaveBeenLastCalledWith('prompts');

    await fireEvent.change(screen.getByLabelText('Need'), { target: { value: 'knowledge' } });
    expect(advisor.getByText(/^Knowledge: drop documents/)).toBeTruthy();
    await fireEvent.click(advisor.getByRole('button', { name: 'Open Knowledge' }));
    expect(onOpen).toHaveBeenLastCalledWith('knowledge');
  });

  it('promises nothing that has not shipped', () => {
    for (const method of METHOD_GUIDE) {
      for (const place of method.availability) {
        expect(placeText(place)).not.toMatch(/comes next|arriv|coming|soon|later|planned/i);
      }
    }
  });

  it('says where training runs in this build', () => {
    expect(trainingDevice(false)).toMatch(/trains on the CPU/);
    expect(trainingDevice(false)).toMatch(/needs a build with CUDA/);
    expect(trainingDevice(true)).toMatch(/NVIDIA GPU when one is found/);

    const { unmount } = render(GuideScreen, {});
    expect(screen.getAllByText(trainingDevice(false)).length).toBeGreaterThan(0);
    unmount();
    render(GuideScreen, { cudaBuild: true });
    expect(screen.getAllByText(trainingDevice(true)).length).toBeGreaterThan(0);
  });
});

describe('pretraining sizes', () => {
  it('promise no GPU in a build without CUDA', () => {
    const cpu = pretrainPresets(false);
    const cuda = pretrainPresets(true);
    expect(cpu.map((p) => p.id)).toEqual(['1m', '10m', '30m', '120m']);
    expect(cuda.map((p) => p.id)).toEqual(cpu.map((p) => p.id));
    for (const preset of cpu) expect(preset.label).not.toMatch(/GPU/);
    expect(cpu.find((p) => p.id === '30m')?.label).toBe('30M parameters: hours on a CPU');
    expect(cuda.find((p) => p.id === '120m')?.label).toMatch(/NVIDIA GPU/);
  });
});

describe('GPU text follows the build', () => {
  function noteText(): string {
    return screen.getAllByRole('note').map((note) => note.textContent ?? '').join(' ');
  }

  it('no GPU: a CPU-only build points to a CUDA build, a CUDA build to the driver', () => {
    const { unmount } = render(NoGpuCard, { note: NO_GPU_NOTE, cudaBuild: false });
    const cpuOnly = noteText();
    unmount();
    render(NoGpuCard, { note: NO_GPU_NOTE, cudaBuild: true });
    const cuda = noteText();

    expect(cpuOnly).not.toBe(cuda);
    expect(cpuOnly).toMatch(/This build has no CUDA/);
    expect(cpuOnly).toContain('scripts/run-app.sh --features cuda');
    expect(cpuOnly).toMatch(/CUDA toolkit/);
    expect(cpuOnly).not.toMatch(/Install its driver and Tunelab will use it/);
    expect(cuda).toMatch(/install its driver/);
    expect(cuda).not.toContain('--features cuda');
  });

  it('a GPU: shown but not used without CUDA, used with it', () => {
    const gpu = gpuReport().gpus[0];
    const { unmount } = render(GpuCard, { gpu, cudaBuild: false });
    const cpuOnly = noteText();
    unmount();
    render(GpuCard, { gpu, cudaBuild: true });
    const cuda = noteText();

    expect(cpuOnly).not.toBe(cuda);
    expect(cpuOnly).toMatch(/this build chats and trains on the CPU/);
    expect(cpuOnly).toContain('scripts/run-app.sh --features cuda');
    expect(cuda).toMatch(/Tunelab chats and trains on this GPU/);
  });

  it('a CUDA build uses only the first of several GPUs', () => {
    const first = gpuReport().gpus[0];
    render(GpuCard, { gpu: { ...first, index: 1, uuid: 'GPU-5678' }, cudaBuild: true });
    expect(noteText()).toMatch(/Not used: Tunelab chats and trains on GPU 0/);
  });

  it('the hardware panel passes the build on, and defaults to a build without CUDA', () => {
    const { unmount } = render(HardwarePanel, { report: gpuReport() });
    expect(noteText()).toMatch(/Shown for reference/);
    unmount();
    const again = render(HardwarePanel, { report: gpuReport(), cudaBuild: true });
    expect(noteText()).toMatch(/chats and trains on this GPU/);
    again.unmount();
    render(HardwarePanel, { report: cpuOnlyReport(), cudaBuild: true });
    expect(noteText()).toMatch(/This build can use an NVIDIA card/);
  });
});
