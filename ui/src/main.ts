import { mount } from 'svelte';
import './app.css';
import App from './App.svelte';
import { themeController } from './lib/theme.svelte';

// Apply the theme before the first paint so the window never flashes the wrong colours.
themeController.apply();

const target = document.getElementById('app');
if (!target) throw new Error('Missing #app element in index.html');

export default mount(App, { target });
