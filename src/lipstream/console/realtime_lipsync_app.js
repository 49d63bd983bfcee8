// Real-time Lip Sync Console: wires the sources, the frame generator, the playback clock, the
// model videos and the compositor together, and keeps the page's status honest.

import { fetchConfig, websocketUrl } from './api.js';
import { FileSource, MicrophoneSource, OpenAIRealtimeSource, TextSource } from './audio_sources.js';
import { AvSync } from './av_sync.js';
import { FaceCompositor } from './face_compositor.js';
import { FrameClient } from './frame_client.js';
import { ModelVideoManager } from './model_video_manager.js';
import { SpeechStream } from './speech_stream.js';

const AV_TOLERANCE_MS = 45; // audio ahead of video is noticed from about 45 ms (ITU-R BT.1359)
const WEB_CHECK_MS = 5000;
const STATS_UI_MS = 250;
const LOG_LINES = 40;

const $ = (id) => document.getElementById(id);

class ConsoleApp {
  constructor() {
    this.config = null;
    this.ctx = new AudioContext({ latencyHint: 'interactive' });
    this.output = this.ctx.createGain();
    this.output.connect(this.ctx.destination);
    this.avSync = new AvSync(this.ctx, this.output);
    this.compositor = new FaceCompositor($('avatar'));
    const params = new URLSearchParams(location.search);
    this.videos = new ModelVideoManager({ maxCachedModels: 5, decoder: params.get('decode') ?? 'auto' });
    this.loaded = new Map(); // model name -> ModelFrames, for synchronous use while drawing
    this.selectedModel = null;
    this.serverModel = null;
    this.displayModel = null;
    this.mode = localStorage.getItem('lipstream.mode') === 'fast' ? 'fast' : 'blend';
    this.muted = false;
    this.web = { state: 'pending', detail: 'connecting…' };
    this.lipsync = { state: 'pending', detail: 'unknown' };
    this.serverStats = null;
    this.modelError = null;
    this.configError = null;
    this.mouthVisible = false;
    this.draws = [];
    this.mouthDraws = [];
    this.framesShown = 0;
    this.idle = { base: 0, start: performance.now(), lastPos: -1 };
    this.lastDrawWasMouth = false;
    this.rafInterval = 1000 / 60;
    this.lastRaf = 0;
    this.lastInterrupt = null;
    this.interrupting = false;
    this.frameDecodeErrors = 0;
    this.stream = null;
    this.client = null;
    this.onCanvas = null; // what the canvas shows: {model, frameId, mouth, bounds}
  }

  // ---------- start-up ----------

  async boot() {
    this._bindUi();
    this.log('Console started.');
    requestAnimationFrame((t) => this._frame(t));
    setInterval(() => this._renderStats(), STATS_UI_MS);
    await this._loadConfig();
    this._startFrameClient();
    this._setupSources();
    this._loadModels();
    setInterval(() => this._checkWeb(), WEB_CHECK_MS);
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden) this.ctx.resume().catch(() => {});
    });
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
      this._overlay('No avatar models are installed.', null, false);
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
    this._overlay(`Decoding the ${name} avatar video…`, 0, true);
    try {
      const frames = await this.videos.loadModel(name, {
        onProgress: (f) => this.selectedModel === name && this._overlay(`Decoding the ${name} avatar video…`, f, true),
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
      if (this.selectedModel === name) this._overlay(err.message, null, false);
    }
  }

  _showModel(name) {
    const frames = this.loaded.get(name);
    if (!frames) return;
    this.modelError = null;
    this.displayModel = frames;
    this.compositor.resize(frames.width, frames.height, frames.scale);
    $('avatar').style.aspectRatio = `${frames.width} / ${frames.height}`;
    $('stage').style.aspectRatio = `${frames.width} / ${frames.height}`;
    this.idle = { base: 0, start: performance.now(), lastPos: -1 };
    this._overlay(null);
  }

  // ---------- the frame generator ----------

  _startFrameClient() {
    const url = websocketUrl(this.config);
    // The sources send PCM at the server's AUDIO_SAMPLE_RATE: the playback clock counts in it,
    // and every session is configured to take it.
    const audioSampleRate = this.config.audio_sample_rate ?? 24000;
    this.avSync.setSampleRate(audioSampleRate);
    const client = new FrameClient(url, { audioSampleRate });
    this.client = client;
    this.stream = new SpeechStream({ client, avSync: this.avSync });
    this.stream.addEventListener('speech', () => this._renderSourceState());
    client.addEventListener('state', () => this._onClientState());
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
    client.addEventListener('current_frame', (e) => this._onFrame(e.detail));
    client.addEventListener('stats', (e) => this._onStats(e.detail));
    client.addEventListener('model_changed', (e) => {
      const m = e.detail;
      this.serverModel = m.model_name;
      this.avSync.setPipelineLatency(m.pipeline_latency_ms);
      this.log(`Model ${m.model_name} active (lookahead ${fmt(m.lookahead_ms)} ms).`);
    });
    client.addEventListener('interrupted', (e) => {
      const d = e.detail;
      this.log(`Interrupted: ${d.dropped_frames ?? 0} frames and ${fmt(d.dropped_audio_ms ?? 0)} ms of audio dropped.`);
    });
    client.addEventListener('error', (e) => this._onServerError(e.detail));
    client.start();
  }

  _onClientState() {
    this._renderServices();
  }

  _onStats(stats) {
    this.serverStats = stats;
    this.avSync.setPipelineLatency(stats.pipeline_latency_ms);
    if (stats.current_model && stats.current_model !== this.serverModel) this.serverModel = stats.current_model;
    const ls = stats.lipsync_service;
    if (ls === 'connected' || ls === 'ok' || ls === 'serving') {
      if (this.lipsync.state === 'bad') this.log('Lip-sync service is back.', 'ok');
      this.lipsync = { state: 'ok', detail: stats.can_generate === false ? 'no model' : 'ready' };
    } else if (ls) {
      if (this.lipsync.state !== 'bad') this.log(`Lip-sync service: ${ls}.`, 'bad');
      this.lipsync = { state: 'bad', detail: String(ls) };
    }
    this._renderServices();
  }

  _onServerError(error) {
    const code = error.code ?? 'error';
    if (code === 'audio_buffer_full') {
      this.avSync.refused(this.stream.lastChunkSamples);
    } else if (code === 'lipsync_unavailable') {
      this.lipsync = { state: 'bad', detail: 'unavailable' };
      this._renderServices();
    } else if (code === 'unknown_model') {
      this.modelError = error.message;
    }
    if (this._lastErrorCode !== code || performance.now() - (this._lastErrorAt ?? 0) > 3000) {
      this.log(`Frame generator: ${error.message ?? code}`, 'bad');
    }
    this._lastErrorCode = code;
    this._lastErrorAt = performance.now();
  }

  _onFrame(message) {
    if (!message.frame_data || message.idle || message.frame_index == null) return;
    const record = {
      index: message.frame_index,
      frameId: message.frame_id ?? message.frame_index,
      bounds: message.bounds,
      modelName: message.model_name ?? this.serverModel,
      latencyMs: message.latency_ms,
      ready: false,
      mouth: null,
    };
    if (!this.avSync.addFrame(record)) return;
    const model = this.loaded.get(record.modelName);
    const box = model ? boxOf(record.bounds, model.scale) : null;
    const options = box ? { resizeWidth: box.w, resizeHeight: box.h, resizeQuality: 'high' } : {};
    createImageBitmap(new Blob([decodeBase64(message.frame_data)], { type: 'image/jpeg' }), options)
      .then((bitmap) => {
        record.mouth = bitmap;
        record.ready = true;
      })
      .catch(() => {
        this.frameDecodeErrors += 1;
      });
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
        this._renderSourceState();
        this._applyGain();
      });
    }
    if (!this.openai.available) {
      const note = $('openai-unavailable');
      note.textContent = 'OpenAI Realtime is not configured on this server: set OPENAI_API_KEY where the '
        + 'web server runs to talk with an assistant. Meanwhile, use the microphone, an audio file or Say text.';
      note.hidden = false;
      $('openai-start').disabled = true;
      if (localStorage.getItem('lipstream.tab') === null) this._selectTab('text');
    }
    if (this.config.tts && this.config.tts.available === false) {
      $('tts-unavailable').hidden = false;
      $('say').disabled = true;
    }
    this._renderSourceState();
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
      this.lastInterrupt = { at, reason, mouthHiddenAfterMs: null };
      this.log(`Interrupt (${reason}).`);
      this._draw(performance.now()); // the mouth goes now, not at the next animation frame
    } finally {
      this.interrupting = false;
    }
  }

  _applyGain() {
    const micSilenced = this.mic?.busy && !$('mic-monitor').checked;
    const gain = this.muted || micSilenced ? 0 : 1;
    this.output.gain.setTargetAtTime(gain, this.ctx.currentTime, 0.01);
  }

  // ---------- drawing ----------

  _frame(now) {
    if (this.lastRaf) {
      const dt = now - this.lastRaf;
      if (dt > 4 && dt < 100) this.rafInterval += (dt - this.rafInterval) * 0.1;
    }
    this.lastRaf = now;
    try {
      this._draw(now + this.rafInterval);
    } finally {
      requestAnimationFrame((t) => this._frame(t));
    }
  }

  /** Draw what should be on screen at performance time `presentAt`. */
  _draw(presentAt) {
    const pick = this.avSync.pick(presentAt);
    const frame = pick?.frame;
    const model = frame ? this.loaded.get(frame.modelName) : null;
    if (frame && model && frame.mouth) {
      if (pick.fresh || !this.lastDrawWasMouth || this._drawnRecord !== frame) {
        this.compositor.resize(model.width, model.height, model.scale);
        const base = model.frame(frame.frameId);
        if (this.mode === 'fast') this.compositor.compositeFrame(base, frame.mouth, frame.bounds);
        else this.compositor.compositeWithBlending(base, frame.mouth, frame.bounds);
        this._drawnRecord = frame;
        this.onCanvas = { model: model.name, frameId: model.frameIndex(frame.frameId), mouth: true, bounds: frame.bounds };
        this._countDraw(true);
        this.displayModel = model;
        this.idle = { base: frame.frameId, start: presentAt, lastPos: -1 };
      }
      this.lastDrawWasMouth = true;
      this.mouthVisible = true;
      return;
    }
    this.mouthVisible = false;
    if (this.lastInterrupt && this.lastInterrupt.mouthHiddenAfterMs === null) {
      this.lastInterrupt.mouthHiddenAfterMs = Math.max(0, performance.now() - this.lastInterrupt.at);
    }
    const shown = this.displayModel;
    if (!shown) return;
    const pos = this.idle.base + Math.floor(((presentAt - this.idle.start) * shown.fps) / 1000);
    if (pos !== this.idle.lastPos || this.lastDrawWasMouth) {
      this.compositor.resize(shown.width, shown.height, shown.scale);
      const frameId = shown.pingPong(pos);
      this.compositor.drawFrame(shown.frame(frameId));
      this.onCanvas = { model: shown.name, frameId, mouth: false, bounds: null };
      this.idle.lastPos = pos;
      this._drawnRecord = null;
      this._countDraw(false);
    }
    this.lastDrawWasMouth = false;
  }

  _countDraw(mouth) {
    const t = performance.now();
    this.draws.push(t);
    if (mouth) {
      this.mouthDraws.push(t);
      this.framesShown += 1;
    }
  }

  // ---------- UI ----------

  _bindUi() {
    $('model-select').addEventListener('change', (e) => {
      if (e.target.value) {
        this.log(`Switching to ${e.target.value}…`);
        this._selectModel(e.target.value);
      }
    });
    const setMode = (mode) => {
      this.mode = mode;
      localStorage.setItem('lipstream.mode', mode);
      $('mode-blend').setAttribute('aria-checked', String(mode === 'blend'));
      $('mode-fast').setAttribute('aria-checked', String(mode === 'fast'));
      this._drawnRecord = null;
    };
    $('mode-blend').addEventListener('click', () => setMode('blend'));
    $('mode-fast').addEventListener('click', () => setMode('fast'));
    setMode(this.mode);
    $('mute').addEventListener('click', () => {
      this.muted = !this.muted;
      $('mute').setAttribute('aria-pressed', String(this.muted));
      $('mute-label').textContent = this.muted ? 'Muted' : 'Sound on';
      this._applyGain();
    });
    $('interrupt').addEventListener('click', () => this.interrupt('Interrupt button'));

    for (const id of ['openai', 'mic', 'file', 'text']) {
      $(`tab-${id}`).addEventListener('click', () => this._selectTab(id));
    }
    const saved = localStorage.getItem('lipstream.tab');
    if (saved) this._selectTab(saved);

    $('openai-start').addEventListener('click', () => {
      this._exclusive(this.openai);
      this.openai.start();
    });
    $('openai-stop').addEventListener('click', () => this.openai.stop());
    $('mic-start').addEventListener('click', () => {
      this._exclusive(this.mic);
      this.mic.start();
    });
    $('mic-stop').addEventListener('click', () => this.mic.stop());
    $('mic-monitor').addEventListener('change', () => this._applyGain());

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
    $('file-play').addEventListener('click', () => {
      if (!chosen()) return;
      this._exclusive(this.file);
      this.file.play(chosen());
    });
    $('file-stop').addEventListener('click', () => this.file.stop());
    $('say').addEventListener('click', () => {
      this._exclusive(this.text);
      this.text.say($('say-text').value);
    });
    $('say-text').addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) $('say').click();
    });
    $('say-stop').addEventListener('click', () => this.text.stop());
  }

  _selectTab(id) {
    if (!$(`tab-${id}`)) return;
    localStorage.setItem('lipstream.tab', id);
    for (const other of ['openai', 'mic', 'file', 'text']) {
      $(`tab-${other}`).setAttribute('aria-selected', String(other === id));
      $(`panel-${other}`).hidden = other !== id;
    }
  }

  _renderSourceState() {
    if (!this.sources) return;
    const show = (source, startId, stopId, statusId) => {
      const busy = source.busy;
      if (startId) $(startId).hidden = busy;
      if (stopId) $(stopId).hidden = !busy;
      const status = $(statusId);
      status.textContent = source.message;
      status.dataset.kind = source.state === 'error' ? 'error' : '';
      $(`tab-${source.id}`).dataset.live = String(source.state === 'live');
    };
    show(this.openai, 'openai-start', 'openai-stop', 'openai-status');
    show(this.mic, 'mic-start', 'mic-stop', 'mic-status');
    show(this.file, 'file-play', 'file-stop', 'file-status');
    show(this.text, 'say', 'say-stop', 'text-status');
    const pill = $('openai-speaking');
    pill.dataset.on = String(this.openai.speaking);
    pill.textContent = this.openai.speaking ? 'Assistant speaking' : this.openai.busy ? 'Assistant listening' : 'Assistant quiet';
  }

  _setWeb(state, detail) {
    this.web = { state, detail };
    this._renderServices();
  }

  _renderServices() {
    const set = (id, state, detail) => {
      const el = $(id);
      el.dataset.state = state;
      el.querySelector('.svc-state').textContent = detail;
    };
    set('svc-web', this.web.state, this.web.detail);
    const c = this.client;
    let fgState = 'pending';
    let fgDetail = 'waiting for the web server';
    if (c) {
      if (c.state === 'open') [fgState, fgDetail] = ['ok', 'connected'];
      else if (c.state === 'connecting') [fgState, fgDetail] = ['warn', 'connecting…'];
      else if (c.state === 'reconnecting') [fgState, fgDetail] = [c.attempt > 1 ? 'bad' : 'warn', c.attempt > 1 ? 'down' : 'reconnecting…'];
    }
    set('svc-frames', fgState, fgDetail);
    const ls = c?.state === 'open' ? this.lipsync : { state: 'pending', detail: 'unknown' };
    set('svc-lipsync', ls.state, ls.detail);
    this._renderBanner();
  }

  /** The one most important problem, in plain words; hidden when all is well. */
  currentMessage() {
    if (this.web.state === 'bad') {
      return { kind: 'bad', text: `Cannot reach the lipstream web server (${location.host}). Retrying…` };
    }
    const c = this.client;
    if (c && c.state !== 'open' && (c.attempt > 1 || c.sessionsOpened > 0)) {
      const wait = c.retryAt ? Math.max(0, (c.retryAt - performance.now()) / 1000) : 0;
      const why = c.lastError ? ` (${c.lastError})` : '';
      return {
        kind: 'bad',
        text: `The frame generator at ${c.url} is not reachable${why}. Reconnecting automatically`
          + `${wait > 0.05 ? ` in ${wait.toFixed(1)} s` : '…'} — the avatar idles until it is back.`,
      };
    }
    if (c?.state === 'open' && this.lipsync.state === 'bad') {
      return {
        kind: 'bad',
        text: `The lip-sync service is ${this.lipsync.detail}. The frame generator retries by itself; mouths resume when it is back.`,
      };
    }
    if (this.modelError) return { kind: 'warn', text: this.modelError };
    return null;
  }

  _renderBanner() {
    const message = this.currentMessage();
    const banner = $('banner');
    banner.hidden = !message;
    if (message) {
      banner.dataset.kind = message.kind;
      $('banner-text').textContent = message.text;
    }
  }

  _overlay(text, progress = null, busy = true) {
    const overlay = $('stage-overlay');
    if (text === null) {
      overlay.hidden = true;
      return;
    }
    overlay.hidden = false;
    $('overlay-text').textContent = text;
    overlay.querySelector('.spinner').style.display = busy ? '' : 'none';
    overlay.querySelector('.progress').style.display = progress === null ? 'none' : '';
    $('overlay-progress').style.width = `${Math.round((progress ?? 0) * 100)}%`;
  }

  _renderStats() {
    const s = this.stats();
    const text = (id, value) => {
      $(id).textContent = value;
    };
    text('st-fps', fmt(s.displayFps, 0));
    text('st-mouth-fps', fmt(s.mouthFps, 0));
    const av = s.avOffset.recentMeanMs;
    text('st-av', av === null ? '–' : `${av >= 0 ? '+' : ''}${av.toFixed(0)}`);
    const within = s.avOffset.maxAbsRecentMs === null || s.avOffset.maxAbsRecentMs <= AV_TOLERANCE_MS;
    $('tile-av').dataset.kind = av === null ? '' : within ? 'ok' : 'bad';
    const badge = $('badge-sync');
    badge.textContent = av === null ? 'A/V —' : `A/V ${av >= 0 ? '+' : ''}${av.toFixed(0)} ms`;
    badge.dataset.kind = within ? '' : 'bad';
    text('st-delay', fmt(s.playbackDelayMs, 0));
    text('st-latency', fmt(s.pipelineLatencyMs, 0));
    const lat = s.server?.latency_ms;
    text('st-frame-latency', lat ? `${fmt(lat.p50, 0)} / ${fmt(lat.p95, 0)}` : '–');
    text('st-audio-buffer', fmt(s.server?.audio_buffer_ms, 0));
    text('st-frame-buffer', `${s.queuedFrames}${s.server ? ` / ${s.server.frame_buffer_fill ?? 0}` : ''}`);
    text('st-dropped', `${s.droppedFrames} / ${s.lateFrames}`);
    const late = s.sync.lateShare;
    text('st-on-time', late === null ? '–' : `${(100 * (1 - late)).toFixed(late > 0 && late < 0.001 ? 1 : 0)}`);
    $('st-late-detail').textContent = s.sync.slots.total
      ? `% · ${s.sync.slots.held} held, ${s.sync.slots.noMouth} without a mouth`
      : '%';
    text('st-rtt', fmt(s.rttMs, 1));
    text('st-model', this.displayModel?.name ?? this.selectedModel ?? '–');
    $('st-model-detail').textContent = this.displayModel
      ? `${this.displayModel.frameCount} frames · ${this.displayModel.width}×${this.displayModel.height} · decoded in ${fmt(this.displayModel.decodeMs, 0)} ms`
      : '';
    const st = this.state();
    const b = $('badge-state');
    const kind = st.mouthVisible || st.playing ? 'speaking' : st.source && st.sourceLive ? 'listening' : 'idle';
    b.dataset.kind = kind;
    b.textContent = kind === 'speaking' ? 'Speaking' : kind === 'listening' ? 'Listening' : 'Idle';
    $('level-bar').style.width = `${Math.min(100, Math.round(Math.sqrt(this.stream?.level ?? 0) * 160))}%`;
    this._renderBanner();
  }

  log(text, kind = '') {
    const li = document.createElement('li');
    li.dataset.kind = kind;
    const time = document.createElement('time');
    time.textContent = new Date().toLocaleTimeString([], { hour12: false });
    const span = document.createElement('span');
    span.textContent = text;
    li.append(time, span);
    const list = $('log');
    list.prepend(li);
    while (list.children.length > LOG_LINES) list.lastChild.remove();
  }

  // ---------- read-only views (the page's test hook reads these) ----------

  state() {
    const live = this.sources?.find((s) => s.state === 'live' || s.state === 'starting') ?? null;
    const c = this.client;
    return {
      connections: {
        web: this.web.state === 'ok' ? 'connected' : this.web.state === 'bad' ? 'down' : 'pending',
        frameGenerator: c?.state ?? 'idle',
        lipsync: c?.state === 'open' ? (this.serverStats?.lipsync_service ?? 'unknown') : 'unknown',
      },
      message: this.currentMessage()?.text ?? null,
      model: this.displayModel?.name ?? null,
      serverModel: this.serverModel,
      selectedModel: this.selectedModel,
      modelReady: Boolean(this.displayModel),
      drawn: Boolean(this.onCanvas), // the canvas shows the avatar
      source: live?.id ?? null,
      sourceLive: live?.state === 'live',
      sources: Object.fromEntries((this.sources ?? []).map((s) => [s.id, { state: s.state, message: s.message, speaking: s.speaking }])),
      speaking: Boolean(live?.speaking) || this.openai?.speaking === true,
      playing: this.avSync.pending,
      mouthVisible: this.mouthVisible,
      framesShown: this.framesShown,
      avOffsetMs: this.avSync.offsetStats().lastMs,
      mode: this.mode,
      openaiAvailable: Boolean(this.config?.openai?.available),
      openaiEvents: [...(this.openai?.events ?? [])],
      sessions: c?.sessionsOpened ?? 0,
      timelineMs: (this.avSync.timeline / this.avSync.sampleRate) * 1000,
      lastInterrupt: this.lastInterrupt ? { ...this.lastInterrupt } : null,
      canvas: { width: this.compositor.canvas.width, height: this.compositor.canvas.height },
      lastBounds: this._drawnRecord?.bounds ?? null,
      lastFrameId: this._drawnRecord?.frameId ?? null,
    };
  }

  /** What the canvas shows, with its pixels (ImageData), read in one go so they agree. */
  snapshot() {
    const { canvas } = this.compositor;
    return { ...this.onCanvas, scale: this.compositor.scale, image: this._pixels(canvas, canvas.width, canvas.height) };
  }

  /** Avatar frame `frameId` of the shown model alone, at the canvas's size (ImageData). */
  avatarFrame(frameId) {
    const model = this.displayModel;
    if (!model || !Number.isFinite(frameId)) return null;
    return this._pixels(model.frame(frameId), model.width, model.height);
  }

  /** `source` drawn at w x h on a scratch canvas made for reading (the display canvas is not). */
  _pixels(source, w, h) {
    this._scratch ??= document.createElement('canvas').getContext('2d', { alpha: false, willReadFrequently: true });
    const ctx = this._scratch;
    if (ctx.canvas.width !== w || ctx.canvas.height !== h) {
      ctx.canvas.width = w;
      ctx.canvas.height = h;
    }
    ctx.drawImage(source, 0, 0, w, h);
    return ctx.getImageData(0, 0, w, h);
  }

  stats() {
    const now = performance.now();
    this.draws = this.draws.filter((t) => now - t < 1000);
    this.mouthDraws = this.mouthDraws.filter((t) => now - t < 1000);
    const o = this.avSync.offsetStats();
    const recent = this.avSync.offsets;
    const server = this.serverStats;
    return {
      displayFps: this.draws.length,
      mouthFps: this.mouthDraws.length,
      framesShown: this.framesShown,
      avOffset: { ...o, maxAbsRecentMs: recent.length ? Math.max(...recent.map(Math.abs)) : null },
      avOffsetMs: o.lastMs,
      playbackDelayMs: this.avSync.delayMs,
      pipelineLatencyMs: this.avSync.pipelineLatencyMs,
      queuedFrames: this.avSync.queuedFrames(),
      droppedFrames: server?.frames_dropped ?? 0,
      lateFrames: this.avSync.counters.framesLate,
      sync: this.avSync.syncStats(),
      audioSampleRate: this.avSync.sampleRate,
      counters: { ...this.avSync.counters, frameDecodeErrors: this.frameDecodeErrors },
      audioChunksSent: this.stream?.chunksSent ?? 0,
      audioChunksDropped: this.stream?.chunksDropped ?? 0,
      rttMs: this.client?.rttMs ?? null,
      decodeMs: this.displayModel?.decodeMs ?? null,
      decodeTimes: { ...this.videos.decodeTimes },
      audioContext: { sampleRate: this.ctx.sampleRate, state: this.ctx.state, baseLatency: this.ctx.baseLatency, outputLatency: this.ctx.outputLatency ?? null },
      server: server ? { ...server } : null,
    };
  }
}

function boxOf(bounds, scale) {
  if (!bounds || bounds.length !== 4) return null;
  const w = Math.round(bounds[2] * scale) - Math.round(bounds[0] * scale);
  const h = Math.round(bounds[3] * scale) - Math.round(bounds[1] * scale);
  return w >= 2 && h >= 2 ? { w, h } : null;
}

function decodeBase64(text) {
  if (typeof Uint8Array.fromBase64 === 'function') return Uint8Array.fromBase64(text);
  const raw = atob(text);
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
}

function fmt(value, digits = 1) {
  return value === null || value === undefined || Number.isNaN(value) ? '–' : Number(value).toFixed(digits);
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

const app = new ConsoleApp();
window.lipstream = Object.freeze({
  state: () => app.state(),
  stats: () => app.stats(),
  snapshot: () => app.snapshot(),
  avatarFrame: (frameId) => app.avatarFrame(frameId),
});
app.boot();
