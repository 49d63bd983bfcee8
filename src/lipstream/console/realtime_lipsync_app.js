// Real-time Lip Sync Console: wires the server's config, the sources, the frame generator, the
// playback clock and the model videos together, starts and stops them, and answers the page's
// test hook (`window.lipstream`). Drawing is frame_painter.js's; what the page says about all of
// it is status_panel.js's and source_panels.js's.

import { fetchConfig, fetchSessionUrl, websocketUrl } from './api.js';
import { FileSource, MicrophoneSource, TextSource } from './audio_sources.js';
import { AvSync } from './av_sync.js';
import { FrameClient } from './frame_client.js';
import { FramePainter } from './frame_painter.js';
import { ModelVideoManager } from './model_video_manager.js';
import { OpenAIRealtimeSource } from './openai_realtime_source.js';
import { SourcePanels } from './source_panels.js';
import { SpeechStream } from './speech_stream.js';
import { $, StatusPanel, fmt } from './status_panel.js';

const WEB_CHECK_MS = 5000;
const STATS_UI_MS = 250;


class ConsoleApp {
  constructor() {
    this.config = null;
    this.ctx = new AudioContext({ latencyHint: 'interactive' });
    this.output = this.ctx.createGain();
    this.output.connect(this.ctx.destination);
    this.avSync = new AvSync(this.ctx, this.output);
    const params = new URLSearchParams(location.search);
    this.videos = new ModelVideoManager({ maxCachedModels: 5, decoder: params.get('decode') ?? 'auto' });
    this.loaded = new Map(); // model name -> ModelFrames, for synchronous use while drawing
    this.painter = new FramePainter($('avatar'), this.avSync, this.loaded);
    this.status = new StatusPanel(this);
    this.panels = null;
    this.selectedModel = null;
    this.serverModel = null;
    this.muted = false;
    this.web = { state: 'pending', detail: 'connecting…' };
    this.lipsync = { state: 'pending', detail: 'unknown' };
    this.serverStats = null;
    this.modelError = null;
    this.configError = null;
    this.interrupting = false;
    this.stream = null;
    this.client = null;
  }

  // ---------- start-up ----------

  async boot() {
    this._bindUi();
    this.log('Console started.');
    this.painter.start();
    setInterval(() => this.status.renderStats(), STATS_UI_MS);
    await this._loadConfig();
    this._startFrameClient();
    this._setupSources();
    this._loadModels();
    setInterval(() => this._checkWeb(), WEB_CHECK_MS);
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden) this.ctx.resume().catch(() => {});
    });
  }

  log(text, kind = '') {
    this.status.log(text, kind);
  }

  async _loadConfig() {
    for (let attempt = 0; ; attempt++) {
      try {
        this.config = await fetchConfig();
        this.configError = null;
        this._setWeb('ok', 'connected');
        return;
      } catch (err) {
        this.configError = err.message;
        this._setWeb('bad', 'unreachable');
        if (attempt === 0) this.log(`Web server: ${err.message}`, 'bad');
        await sleep(Math.min(5000, 500 * 2 ** attempt));
      }
    }
  }

  async _checkWeb() {
    try {
      const response = await fetch('/api/config', { cache: 'no-store' });
      if (!response.ok) throw new Error(`status ${response.status}`);
      if (this.web.state !== 'ok') this.log('Web server is back.', 'ok');
      this._setWeb('ok', 'connected');
    } catch (err) {
      if (this.web.state === 'ok') this.log(`Web server unreachable: ${err.message}`, 'bad');
      this._setWeb('bad', 'unreachable');
    }
  }

  _setWeb(state, detail) {
    this.web = { state, detail };
    this.status.renderServices();
  }

  async _loadModels() {
    for (let attempt = 0; ; attempt++) {
      try {
        const models = await this.videos.listModels();
        this._fillModels(models);
        return;
      } catch (err) {
        this.modelError = `The model list could not be loaded: ${err.message}`;
        await sleep(Math.min(5000, 500 * 2 ** attempt));
      }
    }
  }

  _fillModels(models) {
    const select = $('model-select');
    select.replaceChildren();
    if (!models.length) {
      this.modelError = 'No models are installed on the server (MODELS_DIR is empty).';
      select.append(new Option('No models', ''));
      select.disabled = true;
      this.status.overlay('No avatar models are installed.', null, false);
      return;
    }
    this.modelError = null;
    for (const m of models) {
      const option = new Option(m.name, m.name);
      option.title = `${m.frame_count ?? '?'} frames, ${m.fps ?? '?'} fps`;
      select.append(option);
    }
    select.disabled = false;
    const remembered = localStorage.getItem('lipstream.model');
    const initial = models.some((m) => m.name === remembered) ? remembered : models[0].name;
    select.value = initial;
    this.log(`${models.length} model${models.length === 1 ? '' : 's'} available.`);
    this._selectModel(initial);
  }

  // ---------- models ----------

  _selectModel(name) {
    this.selectedModel = name;
    localStorage.setItem('lipstream.model', name);
    this.videos.pin(name);
    if (this.client?.isOpen) this.client.send({ type: 'set_model', model_name: name });
    this._ensureVideo(name);
  }

  async _ensureVideo(name) {
    if (this.loaded.has(name)) {
      this._showModel(name);
      return;
    }
    const decoding = `Decoding the ${name} avatar video…`;
    this.status.overlay(decoding, 0, true);
    try {
      const frames = await this.videos.loadModel(name, {
        onProgress: (f) => this.selectedModel === name && this.status.overlay(decoding, f, true),
      });
      this.loaded.set(name, frames);
      for (const key of [...this.loaded.keys()]) {
        if (!this.videos.isCached(key)) this.loaded.delete(key);
      }
      this.log(`${name}: ${frames.frameCount} frames of ${frames.width}x${frames.height} decoded in ${frames.decodeMs.toFixed(0)} ms (${frames.method}).`);
      if (this.selectedModel === name) this._showModel(name);
    } catch (err) {
      this.modelError = err.message;
      this.log(err.message, 'bad');
      if (this.selectedModel === name) this.status.overlay(err.message, null, false);
    }
  }

  _showModel(name) {
    const frames = this.loaded.get(name);
    if (!frames) return;
    this.modelError = null;
    this.painter.show(frames);
    $('avatar').style.aspectRatio = `${frames.width} / ${frames.height}`;
    $('stage').style.aspectRatio = `${frames.width} / ${frames.height}`;
    this.status.overlay(null);
  }

  // ---------- the frame generator ----------

  _startFrameClient() {
    const url = websocketUrl(this.config);
    // The sources send PCM at the server's AUDIO_SAMPLE_RATE: the playback clock counts in it,
    // and every session is configured to take it.
    const audioSampleRate = this.config.audio_sample_rate ?? 24000;
    this.avSync.setSampleRate(audioSampleRate);
    // with SESSION_SECRET set, each connection takes a fresh token from POST /api/session
    const resolveUrl = this.config.session?.token_required ? fetchSessionUrl : null;
    const client = new FrameClient(url, { audioSampleRate, resolveUrl });
    this.client = client;
    this.stream = new SpeechStream({ client, avSync: this.avSync });
    this.stream.addEventListener('speech', () => this.panels.render());
    client.addEventListener('state', () => this.status.renderServices());
    client.addEventListener('open', (e) => {
      this.stream.reset();
      this.log(e.detail.session === 1 ? `Frame generator connected (${url}).` : 'Frame generator reconnected: new session.', 'ok');
      if (this.selectedModel) client.send({ type: 'set_model', model_name: this.selectedModel });
      this.openai?.setDirectMonitoring(false);
    });
    client.addEventListener('close', (e) => {
      this.stream.reset();
      this.lipsync = { state: 'pending', detail: 'unknown' };
      if (e.detail.wasOpen) this.log('Lost the frame generator; reconnecting…', 'bad');
      this.openai?.setDirectMonitoring(true);
    });
    client.addEventListener('current_frame', (e) => this.painter.receive(e.detail, this.serverModel));
    client.addEventListener('stats', (e) => this._onStats(e.detail));
    client.addEventListener('model_changed', (e) => {
      const m = e.detail;
      this.serverModel = m.model_name;
      this.avSync.setPipelineLatency(m.pipeline_latency_ms, m.latency_measured);
      this.log(`Model ${m.model_name} active (lookahead ${fmt(m.lookahead_ms)} ms).`);
    });
    client.addEventListener('interrupted', (e) => {
      const d = e.detail;
      this.log(`Interrupted: ${d.dropped_frames ?? 0} frames and ${fmt(d.dropped_audio_ms ?? 0)} ms of audio dropped.`);
    });
    client.addEventListener('error', (e) => this._onServerError(e.detail));
    client.start();
  }

  _onStats(stats) {
    this.serverStats = stats;
    this.avSync.setPipelineLatency(stats.pipeline_latency_ms, stats.latency_measured);
    if (stats.current_model && stats.current_model !== this.serverModel) this.serverModel = stats.current_model;
    const ls = stats.lipsync_service;
    if (ls === 'connected' || ls === 'ok' || ls === 'serving') {
      if (this.lipsync.state === 'bad') this.log('Lip-sync service is back.', 'ok');
      this.lipsync = { state: 'ok', detail: stats.can_generate === false ? 'no model' : 'ready' };
    } else if (ls) {
      if (this.lipsync.state !== 'bad') this.log(`Lip-sync service: ${ls}.`, 'bad');
      this.lipsync = { state: 'bad', detail: String(ls) };
    }
    this.status.renderServices();
  }

  _onServerError(error) {
    const code = error.code ?? 'error';
    if (code === 'audio_buffer_full') {
      this.avSync.refused(this.stream.lastChunkSamples);
    } else if (code === 'lipsync_unavailable') {
      this.lipsync = { state: 'bad', detail: 'unavailable' };
      this.status.renderServices();
    } else if (code === 'unknown_model') {
      this.modelError = error.message;
    }
    if (this._lastErrorCode !== code || performance.now() - (this._lastErrorAt ?? 0) > 3000) {
      this.log(`Frame generator: ${error.message ?? code}`, 'bad');
    }
    this._lastErrorCode = code;
    this._lastErrorAt = performance.now();
  }

  // ---------- sources ----------

  _setupSources() {
    const env = {
      ctx: this.ctx,
      stream: this.stream,
      avSync: this.avSync,
      config: this.config,
      requestInterrupt: (reason) => this.interrupt(reason, { fromSource: true }),
    };
    this.openai = new OpenAIRealtimeSource(env);
    this.mic = new MicrophoneSource(env);
    this.file = new FileSource(env);
    this.text = new TextSource(env);
    this.sources = [this.openai, this.mic, this.file, this.text];
    for (const s of this.sources) {
      s.addEventListener('change', () => {
        this.panels.render();
        this._applyGain();
      });
    }
    this.panels.attach({ openai: this.openai, mic: this.mic, file: this.file, text: this.text }, this.config);
  }

  /** Only one source talks at a time: the timeline is one stream. */
  _exclusive(source) {
    for (const s of this.sources) if (s !== source && s.busy) s.stop();
  }

  interrupt(reason = 'Interrupt', { fromSource = false } = {}) {
    if (this.interrupting) return;
    this.interrupting = true;
    try {
      const at = performance.now();
      for (const s of [this.file, this.text]) if (s.busy && !fromSource) s.stop('Interrupted.');
      if (!fromSource && this.openai.busy) this.openai.cancelResponse();
      this.stream.interrupt();
      this.log(`Interrupt (${reason}).`);
      this.painter.interrupted(at, reason);
    } finally {
      this.interrupting = false;
    }
  }

  _applyGain() {
    const micSilenced = this.mic?.busy && !$('mic-monitor').checked;
    const gain = this.muted || micSilenced ? 0 : 1;
    this.output.gain.setTargetAtTime(gain, this.ctx.currentTime, 0.01);
  }

  // ---------- controls ----------

  _bindUi() {
    $('model-select').addEventListener('change', (e) => {
      if (e.target.value) {
        this.log(`Switching to ${e.target.value}…`);
        this._selectModel(e.target.value);
      }
    });
    const setMode = (mode) => {
      this.painter.setMode(mode);
      localStorage.setItem('lipstream.mode', mode);
      $('mode-blend').setAttribute('aria-checked', String(mode === 'blend'));
      $('mode-fast').setAttribute('aria-checked', String(mode === 'fast'));
    };
    $('mode-blend').addEventListener('click', () => setMode('blend'));
    $('mode-fast').addEventListener('click', () => setMode('fast'));
    setMode(localStorage.getItem('lipstream.mode') === 'fast' ? 'fast' : 'blend');
    $('mute').addEventListener('click', () => {
      this.muted = !this.muted;
      $('mute').setAttribute('aria-pressed', String(this.muted));
      $('mute-label').textContent = this.muted ? 'Muted' : 'Sound on';
      this._applyGain();
    });
    $('interrupt').addEventListener('click', () => this.interrupt('Interrupt button'));
    this.panels = new SourcePanels({
      exclusive: (source) => this._exclusive(source),
      onMonitorChange: () => this._applyGain(),
    });
  }

  // ---------- read-only views (the page's test hook reads these) ----------

  state() {
    const live = this.sources?.find((s) => s.state === 'live' || s.state === 'starting') ?? null;
    const c = this.client;
    const p = this.painter;
    return {
      connections: {
        web: this.web.state === 'ok' ? 'connected' : this.web.state === 'bad' ? 'down' : 'pending',
        frameGenerator: c?.state ?? 'idle',
        lipsync: c?.state === 'open' ? (this.serverStats?.lipsync_service ?? 'unknown') : 'unknown',
      },
      message: this.status.currentMessage()?.text ?? null,
      model: p.displayModel?.name ?? null,
      serverModel: this.serverModel,
      selectedModel: this.selectedModel,
      modelReady: Boolean(p.displayModel),
      drawn: Boolean(p.onCanvas), // the canvas shows the avatar
      source: live?.id ?? null,
      sourceLive: live?.state === 'live',
      sources: Object.fromEntries((this.sources ?? []).map((s) => [s.id, { state: s.state, message: s.message, speaking: s.speaking }])),
      speaking: Boolean(live?.speaking) || this.openai?.speaking === true,
      playing: this.avSync.pending,
      mouthVisible: p.mouthVisible,
      framesShown: p.framesShown,
      avOffsetMs: this.avSync.offsetStats().lastMs,
      mode: p.mode,
      openaiAvailable: Boolean(this.config?.openai?.available),
      openaiEvents: [...(this.openai?.events ?? [])],
      sessions: c?.sessionsOpened ?? 0,
      timelineMs: (this.avSync.timeline / this.avSync.sampleRate) * 1000,
      lastInterrupt: p.lastInterrupt ? { ...p.lastInterrupt } : null,
      canvas: { width: p.compositor.canvas.width, height: p.compositor.canvas.height },
      lastBounds: p.drawnRecord?.bounds ?? null,
      lastFrameId: p.drawnRecord?.frameId ?? null,
    };
  }

  stats() {
    const o = this.avSync.offsetStats();
    const recent = this.avSync.offsets;
    const server = this.serverStats;
    const p = this.painter;
    return {
      ...p.rates(),
      framesShown: p.framesShown,
      avOffset: { ...o, maxAbsRecentMs: recent.length ? Math.max(...recent.map(Math.abs)) : null },
      avOffsetMs: o.lastMs,
      playbackDelayMs: this.avSync.delayMs,
      pipelineLatencyMs: this.avSync.pipelineLatencyMs,
      queuedFrames: this.avSync.queuedFrames(),
      droppedFrames: server?.frames_dropped ?? 0,
      lateFrames: this.avSync.counters.framesLate,
      sync: this.avSync.syncStats(),
      audioSampleRate: this.avSync.sampleRate,
      counters: { ...this.avSync.counters, frameDecodeErrors: p.frameDecodeErrors },
      audioChunksSent: this.stream?.chunksSent ?? 0,
      audioChunksDropped: this.stream?.chunksDropped ?? 0,
      binaryFrames: this.client?.binaryFrames ?? 0,
      rttMs: this.client?.rttMs ?? null,
      decodeMs: p.displayModel?.decodeMs ?? null,
      decodeTimes: { ...this.videos.decodeTimes },
      audioContext: { sampleRate: this.ctx.sampleRate, state: this.ctx.state, baseLatency: this.ctx.baseLatency, outputLatency: this.ctx.outputLatency ?? null },
      server: server ? { ...server } : null,
    };
  }
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

const app = new ConsoleApp();
window.lipstream = Object.freeze({
  state: () => app.state(),
  stats: () => app.stats(),
  snapshot: () => app.painter.snapshot(),
  avatarFrame: (frameId) => app.painter.avatarFrame(frameId),
});
app.boot();
