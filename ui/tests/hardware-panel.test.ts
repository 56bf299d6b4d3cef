import { render, screen } from '@testing-library/svelte';
import { describe, expect, it } from 'vitest';
import HardwarePanel from '../src/components/hardware/HardwarePanel.svelte';
import { NO_GPU_NOTE, cpuOnlyReport, gpuReport } from './helpers/reports';

describe('HardwarePanel', () => {
  it('shows the gpu_note as a friendly card when there is no GPU', () => {
    render(HardwarePanel, { report: cpuOnlyReport() });

    expect(screen.getByText('No GPU detected')).toBeTruthy();
    expect(screen.getByText(NO_GPU_NOTE)).toBeTruthy();
    expect(screen.getByText(/This build has no CUDA/)).toBeTruthy();
    expect(screen.getByText('AMD Ryzen 7 7700X')).toBeTruthy();
    expect(screen.getByText('8 cores · 16 threads')).toBeTruthy();
    expect(screen.getByText('12.0 / 32.0 GiB')).toBeTruthy();
  });

  it('shows one card per GPU with memory, utilization, temperature and power', () => {
    render(HardwarePanel, { report: gpuReport() });

    expect(screen.queryByText('No GPU detected')).toBeNull();
    expect(screen.getByText('NVIDIA GeForce RTX 4090')).toBeTruthy();
    expect(screen.getByText('5.2 / 24.0 GiB')).toBeTruthy();
    expect(screen.getByText('37%')).toBeTruthy();
    expect(screen.getByText('54 °C')).toBeTruthy();
    expect(screen.getByText('182 / 450 W')).toBeTruthy();
    expect(screen.getByText('Driver 550.54.14 · CUDA 12.4')).toBeTruthy();

    const memoryBar = screen.getAllByRole('progressbar', { name: 'Memory' })[0];
    expect(memoryBar.getAttribute('aria-valuenow')).toBe('22');
  });
});
