// The source tabs and their panels: switching tabs, each source's start and stop buttons, the
// file picker and drop zone, and what each panel says about its source.

import { $ } from './status_panel.js';

const TABS = ['openai', 'mic', 'file', 'text'];

export class SourcePanels {
  /**
   * `exclusive(source)` stops every other source before `source` starts; `onMonitorChange()`
   * runs when "Hear the avatar" is ticked or unticked. The buttons act once `attach()` has run.
   */
  constructor({ exclusive, onMonitorChange }) {
    this.exclusive = exclusive;
    this.sources = null; // {openai, mic, file, text}
    for (const id of TABS) {
      $(`tab-${id}`).addEventListener('click', () => this.selectTab(id));
    }
    const saved = localStorage.getItem('lipstream.tab');
    if (saved) this.selectTab(saved);

    const click = (id, act) => $(id).addEventListener('click', () => this.sources && act(this.sources));
    const start = (source, go) => {
      this.exclusive(source);
      go();
    };
    click('openai-start', ({ openai }) => start(openai, () => openai.start()));
    click('openai-stop', ({ openai }) => openai.stop());
    click('mic-start', ({ mic }) => start(mic, () => mic.start()));
    click('mic-stop', ({ mic }) => mic.stop());
    $('mic-monitor').addEventListener('change', () => onMonitorChange());

    const input = $('file-input');
    const chosen = () => input.files?.[0] ?? null;
    input.addEventListener('change', () => {
      $('file-name').textContent = chosen() ? `${chosen().name} (${(chosen().size / 1024).toFixed(0)} KB)` : 'Choose or drop an audio file';
      $('file-play').disabled = !chosen();
    });
    const drop = $('file-drop');
    drop.addEventListener('dragover', (e) => {
      e.preventDefault();
      drop.dataset.over = 'true';
    });
    drop.addEventListener('dragleave', () => delete drop.dataset.over);
    drop.addEventListener('drop', (e) => {
      e.preventDefault();
      delete drop.dataset.over;
      if (e.dataTransfer?.files?.length) {
        input.files = e.dataTransfer.files;
        input.dispatchEvent(new Event('change'));
      }
    });
    click('file-play', ({ file }) => chosen() && start(file, () => file.play(chosen())));
    click('file-stop', ({ file }) => file.stop());
    click('say', ({ text }) => start(text, () => text.say($('say-text').value)));
    $('say-text').addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) $('say').click();
    });
    click('say-stop', ({ text }) => text.stop());
  }

  /** The sources exist (the server's config is in): explain those it cannot offer, show all. */
  attach(sources, config) {
    this.sources = sources;
    if (!sources.openai.available) {
      const note = $('openai-unavailable');
      note.textContent = 'OpenAI Realtime is not configured on this server: set OPENAI_API_KEY where the '
        + 'web server runs to talk with an assistant. Meanwhile, use the microphone, an audio file or Say text.';
      note.hidden = false;
      $('openai-start').disabled = true;
      if (localStorage.getItem('lipstream.tab') === null) this.selectTab('text');
    }
    if (config.tts && config.tts.available === false) {
      $('tts-unavailable').hidden = false;
      $('say').disabled = true;
    }
    this.render();
  }

  selectTab(id) {
    if (!$(`tab-${id}`)) return;
    localStorage.setItem('lipstream.tab', id);
    for (const other of TABS) {
      $(`tab-${other}`).setAttribute('aria-selected', String(other === id));
      $(`panel-${other}`).hidden = other !== id;
    }
  }

  /** Each panel's buttons and status line, each tab's live dot, the assistant's pill. */
  render() {
    if (!this.sources) return;
    const { openai, mic, file, text } = this.sources;
    const show = (source, startId, stopId, statusId) => {
      const busy = source.busy;
      if (startId) $(startId).hidden = busy;
      if (stopId) $(stopId).hidden = !busy;
      const status = $(statusId);
      status.textContent = source.message;
      status.dataset.kind = source.state === 'error' ? 'error' : '';
      $(`tab-${source.id}`).dataset.live = String(source.state === 'live');
    };
    show(openai, 'openai-start', 'openai-stop', 'openai-status');
    show(mic, 'mic-start', 'mic-stop', 'mic-status');
    show(file, 'file-play', 'file-stop', 'file-status');
    show(text, 'say', 'say-stop', 'text-status');
    const pill = $('openai-speaking');
    pill.dataset.on = String(openai.speaking);
    pill.textContent = openai.speaking ? 'Assistant speaking' : openai.busy ? 'Assistant listening' : 'Assistant quiet';
  }
}
