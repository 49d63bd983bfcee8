// The draw loop: on every animation frame, the mouth frame of the audio heard pasted onto its
// avatar frame, else the avatar's own frames (idle, ping-pong); and the canvas's pixels read back
// for the page's test hook.
//
// Mouth JPEGs are decoded as they arrive, at the size they are pasted at, so a paint only
// composites bitmaps that are ready.

import { FaceCompositor } from './face_compositor.js';

export class FramePainter {
  /** `models`: model name -> decoded ModelFrames, read synchronously while drawing. */
  constructor(canvas, avSync, models) {
    this.compositor = new FaceCompositor(canvas);
    this.avSync = avSync;
    this.models = models;
    this.mode = 'blend'; // blend | fast: FaceCompositor's blended or hard-edged paste
    this.displayModel = null; // the ModelFrames on screen
    this.mouthVisible = false;
    this.draws = [];
    this.mouthDraws = [];
    this.framesShown = 0;
    this.frameDecodeErrors = 0;
    this.idle = { base: 0, start: performance.now(), lastPos: -1 };
    this.lastDrawWasMouth = false;
    this.rafInterval = 1000 / 60;
    this.lastRaf = 0;
    this.lastInterrupt = null;
    this.drawnRecord = null; // the mouth frame on the canvas
    this.onCanvas = null; // what the canvas shows: {model, frameId, mouth, bounds}
  }

  /** Paint on every animation frame from now on. */
  start() {
    requestAnimationFrame((t) => this._frame(t));
  }

  /** Idle on `frames` (a decoded model) from its first frame. */
  show(frames) {
    this.displayModel = frames;
    this.compositor.resize(frames.width, frames.height, frames.scale);
    this.idle = { base: 0, start: performance.now(), lastPos: -1 };
  }

  setMode(mode) {
    this.mode = mode;
    this.drawnRecord = null; // repaint the mouth in the new mode
  }

  /** A `current_frame` message (a binary frame's `jpeg`, or base64 `frame_data`): queue its
   * mouth with the playback clock and decode it. */
  receive(message, serverModel) {
    const jpeg = message.jpeg ?? (message.frame_data ? decodeBase64(message.frame_data) : null);
    if (!jpeg || message.idle || message.frame_index == null) return;
    const record = {
      index: message.frame_index,
      frameId: message.frame_id ?? message.frame_index,
      bounds: message.bounds,
      modelName: message.model_name ?? serverModel,
      latencyMs: message.latency_ms,
      ready: false,
      mouth: null,
    };
    if (!this.avSync.addFrame(record)) return;
    const model = this.models.get(record.modelName);
    // Decoded at the size it is pasted at on that model's canvas, so painting does not rescale it.
    const box = model ? FaceCompositor.box(record.bounds, model.scale, model.width, model.height) : null;
    const options = box ? { resizeWidth: box.w, resizeHeight: box.h, resizeQuality: 'high' } : {};
    createImageBitmap(new Blob([jpeg], { type: 'image/jpeg' }), options)
      .then((bitmap) => {
        record.mouth = bitmap;
        record.ready = true;
      })
      .catch(() => {
        this.frameDecodeErrors += 1;
      });
  }

  /** The queued mouths were dropped: paint without one now, not at the next animation frame. */
  interrupted(at, reason) {
    this.lastInterrupt = { at, reason, mouthHiddenAfterMs: null };
    this.draw(performance.now());
  }

  _frame(now) {
    if (this.lastRaf) {
      const dt = now - this.lastRaf;
      if (dt > 4 && dt < 100) this.rafInterval += (dt - this.rafInterval) * 0.1;
    }
    this.lastRaf = now;
    try {
      this.draw(now + this.rafInterval);
    } finally {
      requestAnimationFrame((t) => this._frame(t));
    }
  }

  /** Draw what should be on screen at performance time `presentAt`. */
  draw(presentAt) {
    const pick = this.avSync.pick(presentAt);
    const frame = pick?.frame;
    const model = frame ? this.models.get(frame.modelName) : null;
    if (frame && model && frame.mouth) {
      if (pick.fresh || !this.lastDrawWasMouth || this.drawnRecord !== frame) {
        this.compositor.resize(model.width, model.height, model.scale);
        const base = model.frame(frame.frameId);
        if (this.mode === 'fast') this.compositor.compositeFrame(base, frame.mouth, frame.bounds);
        else this.compositor.compositeWithBlending(base, frame.mouth, frame.bounds);
        this.drawnRecord = frame;
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
      this.drawnRecord = null;
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

  /** Paints, and paints with a mouth, in the last second. */
  rates() {
    const now = performance.now();
    this.draws = this.draws.filter((t) => now - t < 1000);
    this.mouthDraws = this.mouthDraws.filter((t) => now - t < 1000);
    return { displayFps: this.draws.length, mouthFps: this.mouthDraws.length };
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
}

function decodeBase64(text) {
  if (typeof Uint8Array.fromBase64 === 'function') return Uint8Array.fromBase64(text);
  const raw = atob(text);
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
}
