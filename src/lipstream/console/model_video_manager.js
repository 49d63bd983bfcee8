// Model Video Manager: the avatar videos the mouths are composited onto.
//
// Lists the models (GET /api/models), loads a model's video (GET /api/model-video/{name}) and
// decodes every frame once into an ImageBitmap, so a frame is addressed by the avatar frame id
// the frame generator sends (`frame_id`). Decoded models stay in an LRU cache of
// `maxCachedModels`.
//
// Decoding: WebCodecs when the browser has it and the file is a plain H.264 MP4 (one pass over
// the stream, about a third of a second for the 250-frame demo avatar); otherwise a <video>
// element seeked frame by frame, which works everywhere but costs a seek per frame (each one
// decodes from the last keyframe: many seconds for a clip with a single keyframe).

import { demuxMp4 } from './mp4_demuxer.js';

const DEFAULT_MAX_BYTES_PER_MODEL = 512 * 1024 * 1024; // decoded RGBA bytes a model may keep

/** The decoded frames of one model's video. */
export class ModelFrames {
  constructor({ name, fps, width, height, scale, frames, decodeMs, info, method }) {
    this.name = name;
    this.fps = fps;
    this.width = width; // decoded frame size (video size times `scale`)
    this.height = height;
    this.scale = scale; // decoded pixels per video pixel (1 unless the clip was too big to keep)
    this.frames = frames;
    this.decodeMs = decodeMs;
    this.method = method; // 'webcodecs' or 'video-seek'
    this.info = info;
  }

  get frameCount() {
    return this.frames.length;
  }

  /** Avatar frame `id` wrapped into range: the index `frame(id)` draws. */
  frameIndex(id) {
    const n = this.frames.length;
    return ((Math.round(id) % n) + n) % n;
  }

  /** The bitmap of avatar frame `id` (wrapped into range). */
  frame(id) {
    return this.frames[this.frameIndex(id)];
  }

  /** Avatar frame for idle position `p`, played forward then backward so the loop never jumps. */
  pingPong(p) {
    const n = this.frames.length;
    if (n < 2) return 0;
    const period = 2 * n - 2;
    const q = ((Math.floor(p) % period) + period) % period;
    return q < n ? q : period - q;
  }

  close() {
    for (const f of this.frames) f.close?.();
    this.frames = [];
  }
}

export class ModelVideoManager {
  constructor({
    maxCachedModels = 5,
    apiBase = '',
    maxBytesPerModel = DEFAULT_MAX_BYTES_PER_MODEL,
    decoder = 'auto', // 'auto' | 'webcodecs' | 'video-seek'
  } = {}) {
    this.maxCachedModels = maxCachedModels;
    this.decoder = decoder;
    this.apiBase = apiBase;
    this.maxBytesPerModel = maxBytesPerModel;
    this.models = [];
    this.cache = new Map(); // name -> Promise<ModelFrames>, oldest use first
    this.pinned = new Set();
    this.decodeTimes = {};
  }

  /** Fetch the model list from the web server. */
  async listModels() {
    const response = await fetch(`${this.apiBase}/api/models`, { cache: 'no-store' });
    if (!response.ok) throw new Error(`GET /api/models answered ${response.status}`);
    const models = await response.json();
    if (!Array.isArray(models)) throw new Error('GET /api/models did not answer a list');
    this.models = models;
    return models;
  }

  info(name) {
    return this.models.find((m) => m.name === name) ?? null;
  }

  /** Decoded frames of `name`, from the cache or loaded now. `onProgress(fraction)` is optional. */
  loadModel(name, { onProgress } = {}) {
    let entry = this.cache.get(name);
    if (entry) {
      this.cache.delete(name); // re-insert: most recently used
      this.cache.set(name, entry);
      return entry;
    }
    entry = this._decode(name, onProgress);
    this.cache.set(name, entry);
    entry.catch(() => this.cache.get(name) === entry && this.cache.delete(name));
    this._evict();
    return entry;
  }

  /** Decode several models ahead of use, one after another (decoding is CPU heavy). */
  async preloadModels(names) {
    const loaded = [];
    for (const name of names.slice(0, this.maxCachedModels)) {
      try {
        loaded.push(await this.loadModel(name));
      } catch (err) {
        console.warn(`preloading ${name} failed: ${err.message}`);
      }
    }
    return loaded;
  }

  /** Keep `name` in the cache however old its last use (the model on screen). */
  pin(name) {
    this.pinned.clear();
    if (name) this.pinned.add(name);
  }

  isCached(name) {
    return this.cache.has(name);
  }

  _evict() {
    while (this.cache.size > this.maxCachedModels) {
      const victim = [...this.cache.keys()].find((n) => !this.pinned.has(n));
      if (victim === undefined) return;
      const entry = this.cache.get(victim);
      this.cache.delete(victim);
      entry.then((frames) => frames.close(), () => {});
    }
  }

  async _decode(name, onProgress) {
    const info = this.info(name) ?? {};
    const url = info.video_url ?? `${this.apiBase}/api/model-video/${encodeURIComponent(name)}`;
    const fps = info.fps || 25;
    const started = performance.now();
    let decoded = null;
    let method = 'webcodecs';
    if (this.decoder !== 'video-seek' && typeof VideoDecoder === 'function') {
      try {
        decoded = await this._decodeWebCodecs(url, info, onProgress);
      } catch (err) {
        if (err.fatal || this.decoder === 'webcodecs') throw err;
        console.info(`${name}: WebCodecs decoding unavailable (${err.message}); seeking a <video> instead`);
      }
    }
    if (!decoded) {
      method = 'video-seek';
      decoded = await this._decodeBySeeking(url, name, info, fps, onProgress);
    }
    const decodeMs = performance.now() - started;
    this.decodeTimes[name] = { ms: decodeMs, method, frames: decoded.frames.length };
    return new ModelFrames({ name, fps, ...decoded, decodeMs, info, method });
  }

  _scaleFor(count, vw, vh) {
    const bytes = count * vw * vh * 4;
    const scale = bytes > this.maxBytesPerModel ? Math.sqrt(this.maxBytesPerModel / bytes) : 1;
    const width = Math.max(1, Math.round(vw * scale));
    const height = Math.max(1, Math.round(vh * scale));
    const options = scale === 1 ? {} : { resizeWidth: width, resizeHeight: height, resizeQuality: 'high' };
    return { scale, width, height, options };
  }

  async _decodeWebCodecs(url, info, onProgress) {
    const response = await fetch(url);
    if (!response.ok) {
      const err = new Error(`the avatar video could not be loaded (${url} answered ${response.status})`);
      err.fatal = true;
      throw err;
    }
    const buffer = await response.arrayBuffer();
    const track = demuxMp4(buffer);
    const config = {
      codec: track.codec,
      codedWidth: track.width,
      codedHeight: track.height,
      description: track.description,
    };
    const support = await VideoDecoder.isConfigSupported(config);
    if (!support.supported) throw new Error(`${track.codec} is not decodable here`);
    const count = track.samples.length;
    const { scale, width, height, options } = this._scaleFor(count, track.width, track.height);
    const pending = [];
    let failure = null;
    let done = 0;
    const decoder = new VideoDecoder({
      output: (frame) => {
        const timestamp = frame.timestamp;
        pending.push(
          createImageBitmap(frame, options)
            .then((bitmap) => {
              done += 1;
              if (onProgress && (done % 10 === 0 || done === count)) onProgress(done / count);
              return { timestamp, bitmap };
            })
            .finally(() => frame.close()),
        );
      },
      error: (err) => {
        failure = err;
      },
    });
    decoder.configure(config);
    const bytes = new Uint8Array(buffer);
    for (const s of track.samples) {
      decoder.decode(new EncodedVideoChunk({
        type: s.key ? 'key' : 'delta',
        timestamp: Math.round((s.cts * 1e6) / track.timescale),
        duration: Math.round((s.duration * 1e6) / track.timescale),
        data: bytes.subarray(s.offset, s.offset + s.size),
      }));
      // Let the decoder drain now and then so it never holds the whole clip at once.
      if (decoder.decodeQueueSize > 16) await new Promise((r) => setTimeout(r, 0));
    }
    await decoder.flush();
    decoder.close();
    if (failure) throw failure;
    const decoded = (await Promise.all(pending)).sort((a, b) => a.timestamp - b.timestamp);
    if (decoded.length !== count) {
      for (const d of decoded) d.bitmap.close();
      throw new Error(`decoded ${decoded.length} of ${count} frames`);
    }
    return { frames: decoded.map((d) => d.bitmap), width, height, scale };
  }

  async _decodeBySeeking(url, name, info, fps, onProgress) {
    const video = document.createElement('video');
    video.muted = true;
    video.playsInline = true;
    video.preload = 'auto';
    video.src = url;
    try {
      await new Promise((resolve, reject) => {
        video.addEventListener('loadeddata', resolve, { once: true });
        video.addEventListener('error', () => {
          const code = video.error?.code;
          reject(new Error(`the avatar video of ${name} could not be loaded (${url}, media error ${code})`));
        }, { once: true });
      });
      const count = info.frame_count || Math.round(video.duration * fps);
      const { scale, width, height, options } = this._scaleFor(count, video.videoWidth, video.videoHeight);
      const frames = [];
      for (let i = 0; i < count; i++) {
        // Aim at the middle of frame i so rounding can never land on a neighbour.
        const t = Math.min((i + 0.5) / fps, Math.max(0, video.duration - 0.001));
        await seek(video, t);
        frames.push(await createImageBitmap(video, options));
        if (onProgress && (i % 10 === 9 || i === count - 1)) onProgress((i + 1) / count);
      }
      return { frames, width, height, scale };
    } finally {
      video.removeAttribute('src');
      video.load();
    }
  }
}

function seek(video, t) {
  return new Promise((resolve, reject) => {
    const onSeeked = () => {
      video.removeEventListener('error', onError);
      resolve();
    };
    const onError = () => {
      video.removeEventListener('seeked', onSeeked);
      reject(new Error(`seeking the avatar video failed at ${t.toFixed(3)} s`));
    };
    video.addEventListener('seeked', onSeeked, { once: true });
    video.addEventListener('error', onError, { once: true });
    video.currentTime = t;
  });
}
