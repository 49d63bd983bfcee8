// The page's status: the services in the top bar, the banner naming the one problem that
// matters, the stage's overlay and badges, the stats tiles and the Activity log.
//
// It only shows: the facts are the app's (its connection states, `state()` and `stats()`).

const AV_TOLERANCE_MS = 45; // audio ahead of video is noticed from about 45 ms (ITU-R BT.1359)
const LOG_LINES = 40;

export const $ = (id) => document.getElementById(id);

export class StatusPanel {
  /** `app`: the ConsoleApp whose state this panel shows. */
  constructor(app) {
    this.app = app;
  }

  /** The top bar's three services, then the banner. */
  renderServices() {
    const { web, client: c, lipsync } = this.app;
    const set = (id, state, detail) => {
      const el = $(id);
      el.dataset.state = state;
      el.querySelector('.svc-state').textContent = detail;
    };
    set('svc-web', web.state, web.detail);
    let fgState = 'pending';
    let fgDetail = 'waiting for the web server';
    if (c) {
      if (c.state === 'open') [fgState, fgDetail] = ['ok', 'connected'];
      else if (c.state === 'connecting') [fgState, fgDetail] = ['warn', 'connecting…'];
      else if (c.state === 'reconnecting') [fgState, fgDetail] = [c.attempt > 1 ? 'bad' : 'warn', c.attempt > 1 ? 'down' : 'reconnecting…'];
    }
    set('svc-frames', fgState, fgDetail);
    const ls = c?.state === 'open' ? lipsync : { state: 'pending', detail: 'unknown' };
    set('svc-lipsync', ls.state, ls.detail);
    this.renderBanner();
  }

  /** The one most important problem, in plain words; null when all is well. */
  currentMessage() {
    const { web, client: c, lipsync, modelError } = this.app;
    if (web.state === 'bad') {
      return { kind: 'bad', text: `Cannot reach the lipstream web server (${location.host}). Retrying…` };
    }
    if (c && c.state !== 'open' && (c.attempt > 1 || c.sessionsOpened > 0)) {
      const wait = c.retryAt ? Math.max(0, (c.retryAt - performance.now()) / 1000) : 0;
      const why = c.lastError ? ` (${c.lastError})` : '';
      return {
        kind: 'bad',
        text: `The frame generator at ${c.url} is not reachable${why}. Reconnecting automatically`
          + `${wait > 0.05 ? ` in ${wait.toFixed(1)} s` : '…'} — the avatar idles until it is back.`,
      };
    }
    if (c?.state === 'open' && lipsync.state === 'bad') {
      return {
        kind: 'bad',
        text: `The lip-sync service is ${lipsync.detail}. The frame generator retries by itself; mouths resume when it is back.`,
      };
    }
    if (modelError) return { kind: 'warn', text: modelError };
    return null;
  }

  renderBanner() {
    const message = this.currentMessage();
    const banner = $('banner');
    banner.hidden = !message;
    if (message) {
      banner.dataset.kind = message.kind;
      $('banner-text').textContent = message.text;
    }
  }

  /** Over the stage: `text` (null hides it), a progress bar at `progress` (0..1), a spinner. */
  overlay(text, progress = null, busy = true) {
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

  /** The tiles, the stage's badges and the level meter, then the banner. */
  renderStats() {
    const s = this.app.stats();
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
    const shown = this.app.painter.displayModel;
    text('st-model', shown?.name ?? this.app.selectedModel ?? '–');
    $('st-model-detail').textContent = shown
      ? `${shown.frameCount} frames · ${shown.width}×${shown.height} · decoded in ${fmt(shown.decodeMs, 0)} ms`
      : '';
    const st = this.app.state();
    const b = $('badge-state');
    const kind = st.mouthVisible || st.playing ? 'speaking' : st.source && st.sourceLive ? 'listening' : 'idle';
    b.dataset.kind = kind;
    b.textContent = kind === 'speaking' ? 'Speaking' : kind === 'listening' ? 'Listening' : 'Idle';
    $('level-bar').style.width = `${Math.min(100, Math.round(Math.sqrt(this.app.stream?.level ?? 0) * 160))}%`;
    this.renderBanner();
  }

  /** A line at the top of the Activity list; `kind` '', 'ok' or 'bad' colours it. */
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
}

/** `value` with `digits` decimals; a dash when there is none. */
export function fmt(value, digits = 1) {
  return value === null || value === undefined || Number.isNaN(value) ? '–' : Number(value).toFixed(digits);
}
