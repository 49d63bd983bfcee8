// WebSocket client of the frame generator (docs/frame-protocol.md), with reconnect and backoff.
//
// One connection is one session on the server: a fresh connection starts a fresh timeline, so
// the app resets its playback clock on every `open`. Server messages are re-dispatched as DOM
// events named after their `type` (`current_frame`, `stats`, `model_changed`, ...), with the
// parsed message as `event.detail`. Frames come as binary messages (`binary_frames`): their
// `current_frame` event carries the header's fields and `jpeg`, the image's bytes.

const BACKOFF_MS = [250, 500, 1000, 2000, 4000];
const MAX_BACKOFF_MS = 5000;
const PONG_TIMEOUT_MS = 6000; // a connection that stops answering pings is treated as dead
const MAX_BUFFERED_BYTES = 2 * 1024 * 1024; // audio is dropped, not queued, past this backlog
const FRAME_MAGIC = 0x4c534631; // 'LSF1' read big-endian: a binary frame's first four bytes
const utf8 = new TextDecoder();

export class FrameClient extends EventTarget {
  // `resolveUrl` (optional, async): the address to use for each new connection, e.g. one
  // carrying a fresh session token (tokens are checked when a connection opens, so every
  // reconnect asks for a new one).
  constructor(url, {
    statsIntervalMs = 1000, pingIntervalMs = 2000, audioSampleRate = null, resolveUrl = null,
  } = {}) {
    super();
    this.url = url;
    this.resolveUrl = resolveUrl;
    this.audioSampleRate = audioSampleRate; // sent with `configure` on every new session
    this.statsIntervalMs = statsIntervalMs;
    this.pingIntervalMs = pingIntervalMs;
    this.state = 'idle'; // idle | connecting | open | reconnecting | stopped
    this.attempt = 0;
    this.retryAt = null;
    this.lastError = null;
    this.rttMs = null;
    this.sessionsOpened = 0;
    this.bytesDropped = 0;
    this.binaryFrames = 0; // frames that came as binary messages
    this.ws = null;
    this._timers = [];
    this._retryTimer = null;
    this._lastPong = 0;
  }

  start() {
    if (this.state !== 'idle' && this.state !== 'stopped') return;
    this._connect();
  }

  stop() {
    this._setState('stopped');
    clearTimeout(this._retryTimer);
    this._clearTimers();
    if (this.ws) this.ws.close(1000, 'console closed');
    this.ws = null;
  }

  get isOpen() {
    return this.state === 'open' && this.ws?.readyState === WebSocket.OPEN;
  }

  /** Send a JSON message; false when the connection is not open. */
  send(message) {
    if (!this.isOpen) return false;
    this.ws.send(JSON.stringify(message));
    return true;
  }

  /** Send PCM16 mono audio as a binary frame; false when it could not be sent. */
  sendAudio(int16) {
    if (!this.isOpen) return false;
    if (this.ws.bufferedAmount > MAX_BUFFERED_BYTES) {
      this.bytesDropped += int16.byteLength;
      return false;
    }
    this.ws.send(int16.byteOffset === 0 && int16.byteLength === int16.buffer.byteLength
      ? int16.buffer
      : int16.slice().buffer);
    return true;
  }

  _connect() {
    clearTimeout(this._retryTimer);
    this._setState(this.attempt === 0 ? 'connecting' : 'reconnecting');
    if (!this.resolveUrl) {
      this._open();
      return;
    }
    Promise.resolve(this.resolveUrl()).then((url) => {
      if (this.state === 'stopped') return;
      this.url = url;
      this._open();
    }, (err) => {
      if (this.state === 'stopped') return;
      this.lastError = `cannot get a session token: ${err.message}`;
      this._scheduleRetry();
    });
  }

  _open() {
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (err) {
      this.lastError = `bad frame generator address ${this.url}: ${err.message}`;
      this._scheduleRetry();
      return;
    }
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    ws.onopen = () => {
      if (this.ws !== ws) return;
      this.attempt = 0;
      this.retryAt = null;
      this.lastError = null;
      this.sessionsOpened += 1;
      this._lastPong = performance.now();
      this._setState('open');
      const configure = { type: 'configure', push_frames: true, binary_frames: true };
      if (this.audioSampleRate) configure.audio_sample_rate = this.audioSampleRate;
      ws.send(JSON.stringify(configure));
      this.dispatchEvent(new CustomEvent('open', { detail: { session: this.sessionsOpened } }));
      this._startTimers();
    };
    ws.onmessage = (event) => {
      if (this.ws !== ws) return;
      let message;
      try {
        if (typeof event.data === 'string') {
          message = JSON.parse(event.data);
        } else {
          message = parseFrame(event.data);
          this.binaryFrames += 1;
        }
      } catch {
        return;
      }
      if (message.type === 'pong') {
        this._lastPong = performance.now();
        if (typeof message.sent_at === 'number') this.rttMs = performance.now() - message.sent_at;
      }
      this.dispatchEvent(new CustomEvent(message.type, { detail: message }));
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this._clearTimers();
      this.ws = null;
      if (this.state === 'stopped') return;
      const wasOpen = this.state === 'open';
      if (event.code === 1013) this.lastError = 'the frame generator is full (too many sessions)';
      else if (wasOpen) this.lastError = `connection lost (code ${event.code})`;
      else this.lastError = 'cannot connect';
      this.dispatchEvent(new CustomEvent('close', { detail: { code: event.code, wasOpen } }));
      this._scheduleRetry();
    };
    ws.onerror = () => {}; // onclose follows and carries the story
  }

  _scheduleRetry() {
    const base = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)] ?? MAX_BACKOFF_MS;
    const delay = Math.min(MAX_BACKOFF_MS, base) * (0.85 + 0.3 * Math.random());
    this.attempt += 1;
    this.retryAt = performance.now() + delay;
    this._setState('reconnecting');
    this._retryTimer = setTimeout(() => this._connect(), delay);
  }

  _startTimers() {
    const ws = this.ws;
    this._timers.push(setInterval(() => this.send({ type: 'get_stats' }), this.statsIntervalMs));
    this._timers.push(setInterval(() => {
      if (performance.now() - this._lastPong > PONG_TIMEOUT_MS && this.ws === ws) {
        this.lastError = 'the frame generator stopped answering';
        ws.close(4000, 'no pong');
        return;
      }
      this.send({ type: 'ping', sent_at: performance.now() });
    }, this.pingIntervalMs));
    this.send({ type: 'get_stats' });
  }

  _clearTimers() {
    for (const t of this._timers) clearInterval(t);
    this._timers = [];
  }

  _setState(state) {
    if (this.state === state && state !== 'reconnecting') return;
    this.state = state;
    this.dispatchEvent(new CustomEvent('state', { detail: { state } }));
  }
}

/** A binary frame (docs/frame-protocol.md, "Binary frames") as a `current_frame` message. */
export function parseFrame(buffer) {
  // magic, uint32 LE header length, JSON header, JPEG
  const view = new DataView(buffer);
  if (view.byteLength < 8 || view.getUint32(0) !== FRAME_MAGIC) throw new Error('not a binary frame');
  const bytes = new Uint8Array(buffer);
  const size = view.getUint32(4, true);
  const header = JSON.parse(utf8.decode(bytes.subarray(8, 8 + size)));
  return { ...header, jpeg: bytes.subarray(8 + size) };
}
