// Audio sources: what they share, the microphone, audio files and say-text (OpenAI Realtime, the
// fourth, is in openai_realtime_source.js).
//
// Each turns its audio into 24 kHz PCM16 chunks (pcm.js) and hands them to the SpeechStream.
// Live sources (OpenAI's remote track, the microphone) are tapped by an AudioWorklet on the
// console's AudioContext; clips (files, synthesised speech) are decoded whole and sent at
// real-time pace, a little ahead, then closed with `end_of_speech`.

import { synthesize, ApiError } from './api.js';
import { PcmEncoder, encodeClip, monoOf } from './pcm.js';

// Clips are sent this far ahead of real time: the frame generator works ahead by as much, which
// absorbs slow inference; with the lookahead it stays well inside the server's 3 s audio buffer.
const CLIP_LEAD_S = 1.0;
const CLIP_TICK_MS = 20;

/** A source could not start or stopped with a problem; `message` is for the user. */
export class SourceError extends Error {
  constructor(message) {
    super(message);
    this.name = 'SourceError';
  }
}

const workletLoaded = new WeakMap();

/** Load the tap worklet once per AudioContext. */
export async function ensureTapWorklet(ctx) {
  if (!workletLoaded.has(ctx)) {
    workletLoaded.set(ctx, ctx.audioWorklet.addModule(new URL('./pcm_tap_worklet.js', import.meta.url)));
  }
  try {
    await workletLoaded.get(ctx);
  } catch (err) {
    workletLoaded.delete(ctx);
    throw err;
  }
}

/** Tap `node` (a live source) into PCM16 chunks: `onChunk(int16)` for each. Returns a stopper. */
export async function tapLive(ctx, node, onChunk, { sampleRate, chunkMs }) {
  await ensureTapWorklet(ctx);
  const tap = new AudioWorkletNode(ctx, 'pcm-tap', {
    numberOfInputs: 1,
    numberOfOutputs: 1,
    outputChannelCount: [1],
    channelCountMode: 'explicit',
    channelCount: 2,
  });
  // A worklet is only pulled when it leads to the destination; a zero gain keeps it silent.
  const sink = ctx.createGain();
  sink.gain.value = 0;
  node.connect(tap);
  tap.connect(sink).connect(ctx.destination);
  const encoder = new PcmEncoder(ctx.sampleRate, { outRate: sampleRate, chunkMs });
  tap.port.onmessage = (event) => {
    for (const chunk of encoder.push(event.data.samples)) onChunk(chunk);
  };
  return () => {
    tap.port.onmessage = null;
    tap.port.postMessage({ type: 'close' });
    try {
      node.disconnect();
      tap.disconnect();
      sink.disconnect();
    } catch {
      // already disconnected
    }
  };
}

/** Common state handling: `state` is idle | starting | live | error; events 'change'. */
export class AudioSource extends EventTarget {
  constructor(env, id, label) {
    super();
    this.env = env; // {ctx, stream, avSync, config, requestInterrupt(reason)}
    this.id = id;
    this.label = label;
    this.state = 'idle';
    this.message = '';
    this.speaking = false;
  }

  get busy() {
    return this.state === 'starting' || this.state === 'live';
  }

  _set(state, message = this.message) {
    this.state = state;
    this.message = message;
    this.dispatchEvent(new CustomEvent('change'));
  }

  _speaking(value) {
    if (this.speaking === value) return;
    this.speaking = value;
    this.dispatchEvent(new CustomEvent('change'));
  }

  _fail(err) {
    const message = err instanceof SourceError || err instanceof ApiError ? err.message : `${err.name}: ${err.message}`;
    this._set('error', message);
  }

  get chunkOptions() {
    return {
      sampleRate: this.env.config.audio_sample_rate ?? 24000,
      chunkMs: this.env.config.audio_chunk_duration_ms ?? 40,
    };
  }

  _requireFrameGenerator() {
    if (!this.env.stream.connected) {
      throw new SourceError('The frame generator is not connected yet; the console reconnects by itself.');
    }
  }
}

/** Microphone: what you say, the avatar mouths. */
export class MicrophoneSource extends AudioSource {
  constructor(env) {
    super(env, 'mic', 'Microphone');
  }

  async start() {
    if (this.busy) return;
    this._set('starting', 'Asking for the microphone…');
    try {
      this._requireFrameGenerator();
      if (!navigator.mediaDevices?.getUserMedia) {
        throw new SourceError('This browser gives no microphone access here (a secure origin is needed).');
      }
      this.media = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      });
      const { ctx } = this.env;
      await ctx.resume();
      const node = ctx.createMediaStreamSource(this.media);
      const [track] = this.media.getAudioTracks();
      track.addEventListener('ended', () => {
        if (this.busy) this.stop('The microphone was disconnected.');
      });
      this.untap = await tapLive(ctx, node, (chunk) => this.env.stream.sendChunk(chunk), this.chunkOptions);
      this._set('live', `Listening: ${track.label || 'default microphone'}`);
      this._speaking(true);
    } catch (err) {
      this._release();
      if (err.name === 'NotAllowedError') this._fail(new SourceError('Microphone access was denied.'));
      else if (err.name === 'NotFoundError') this._fail(new SourceError('No microphone was found.'));
      else this._fail(err);
    }
  }

  stop(message = 'Microphone off.') {
    const wasLive = this.busy;
    this._release();
    if (wasLive) this.env.stream.end();
    this._speaking(false);
    this._set('idle', message);
  }

  _release() {
    this.untap?.();
    this.untap = null;
    for (const t of this.media?.getTracks() ?? []) t.stop();
    this.media = null;
  }
}

/** Plays a decoded clip into the stream at real-time pace, a little ahead; ends the utterance. */
class ClipSource extends AudioSource {
  /** Stop what plays, `load()` the encoded clip (saying `loading` meanwhile), then play it. */
  async _play(loading, load, what) {
    if (this.busy) this.stop();
    this._set('starting', loading);
    try {
      this._requireFrameGenerator();
      const encoded = await load();
      if (this.state !== 'starting') return; // stopped while the clip was loading
      await this._playEncoded(encoded, what);
    } catch (err) {
      this._speaking(false);
      this._fail(err);
    }
  }

  async _playEncoded(encodedAudio, what) {
    const { ctx } = this.env;
    await ctx.resume();
    let decoded;
    try {
      decoded = await ctx.decodeAudioData(encodedAudio);
    } catch {
      throw new SourceError(`${what} could not be decoded (wav, mp3, ogg and other formats the browser plays are accepted).`);
    }
    const chunks = encodeClip(monoOf(decoded), decoded.sampleRate, {
      outRate: this.chunkOptions.sampleRate,
      chunkMs: this.chunkOptions.chunkMs,
    });
    this._requireFrameGenerator();
    this.duration = decoded.duration;
    this._set('live', `${what}: ${decoded.duration.toFixed(1)} s`);
    this._speaking(true);
    const rate = this.chunkOptions.sampleRate;
    const started = ctx.currentTime;
    let sentS = 0;
    let i = 0;
    await new Promise((resolve) => {
      this._finish = resolve;
      const tick = () => {
        const due = ctx.currentTime - started + CLIP_LEAD_S;
        while (i < chunks.length && sentS < due) {
          if (!this.env.stream.sendChunk(chunks[i], { live: false })) {
            this._stopTimer();
            this._set('error', 'The frame generator went away; playback stopped.');
            resolve();
            return;
          }
          sentS += chunks[i].length / rate;
          i += 1;
        }
        if (i >= chunks.length) {
          this._stopTimer();
          this.env.stream.end();
          resolve();
        }
      };
      this._timer = setInterval(tick, CLIP_TICK_MS);
      tick();
    });
    this._finish = null;
    // The utterance is sent; it is still heard for the playback delay after this.
    if (this.state === 'live') {
      this._waitPlayback();
    }
  }

  _waitPlayback() {
    const poll = () => {
      if (this.state !== 'live') return;
      if (this.env.avSync.pending) {
        this._pollTimer = setTimeout(poll, 50);
      } else {
        this._speaking(false);
        this._set('idle', 'Done.');
      }
    };
    poll();
  }

  stop(message = 'Stopped.') {
    const wasLive = this.state === 'live' || this.state === 'starting';
    this._stopTimer();
    clearTimeout(this._pollTimer);
    this._finish?.();
    if (wasLive) this.env.requestInterrupt('playback stopped');
    this._speaking(false);
    this._set('idle', message);
  }

  _stopTimer() {
    clearInterval(this._timer);
    this._timer = null;
  }
}

/** An audio file chosen by the user (wav, mp3, ogg, ...). */
export class FileSource extends ClipSource {
  constructor(env) {
    super(env, 'file', 'Audio file');
  }

  async play(file) {
    await this._play(`Decoding ${file.name}…`, () => file.arrayBuffer(), file.name);
  }
}

/** Text spoken by the server's offline voice (POST /api/tts). */
export class TextSource extends ClipSource {
  constructor(env) {
    super(env, 'text', 'Say text');
  }

  async say(text) {
    const clean = text.trim();
    if (!clean) {
      this._set('error', 'Type something for the avatar to say.');
      return;
    }
    await this._play('Synthesising speech…', () => synthesize(clean), 'Speech');
  }
}
