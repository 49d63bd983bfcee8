// Audio sources: OpenAI Realtime (WebRTC), microphone, audio file and say-text.
//
// Each turns its audio into 24 kHz PCM16 chunks (pcm.js) and hands them to the SpeechStream.
// Live sources (OpenAI's remote track, the microphone) are tapped by an AudioWorklet on the
// console's AudioContext; clips (files, synthesised speech) are decoded whole and sent at
// real-time pace, a little ahead, then closed with `end_of_speech`.

import { fetchRealtimeToken, synthesize, ApiError } from './api.js';
import { PcmEncoder, encodeClip, monoOf } from './pcm.js';

// Clips are sent this far ahead of real time: the frame generator works ahead by as much, which
// absorbs slow inference; with the lookahead it stays well inside the server's 3 s audio buffer.
const CLIP_LEAD_S = 1.0;
const CLIP_TICK_MS = 20;
const PREROLL_CHUNKS = 5; // remote audio kept from before `output_audio_buffer.started`
const SPEECH_TAIL_MS = 300; // remote audio still arriving after `output_audio_buffer.stopped`
const ICE_GATHER_TIMEOUT_MS = 2000;

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
async function tapLive(ctx, node, onChunk, { sampleRate, chunkMs }) {
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
class AudioSource extends EventTarget {
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
    if (this.busy) this.stop();
    this._set('starting', `Decoding ${file.name}…`);
    try {
      this._requireFrameGenerator();
      await this._playEncoded(await file.arrayBuffer(), file.name);
    } catch (err) {
      this._speaking(false);
      this._fail(err);
    }
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
    if (this.busy) this.stop();
    this._set('starting', 'Synthesising speech…');
    try {
      this._requireFrameGenerator();
      const audio = await synthesize(clean);
      if (this.state !== 'starting') return; // stopped while the server was speaking
      await this._playEncoded(audio, 'Speech');
    } catch (err) {
      this._speaking(false);
      this._fail(err);
    }
  }
}

/** OpenAI Realtime over WebRTC: the assistant's voice drives the mouth. */
export class OpenAIRealtimeSource extends AudioSource {
  constructor(env) {
    super(env, 'openai', 'OpenAI Realtime');
    this.events = [];
    this.gateOpen = false;
    this.preroll = [];
  }

  get available() {
    return Boolean(this.env.config.openai?.available);
  }

  async start() {
    if (this.busy) return;
    if (!this.available) {
      this._set('error', 'OpenAI Realtime is not configured on this server (no OPENAI_API_KEY).');
      return;
    }
    this._set('starting', 'Getting a session key…');
    try {
      this._requireFrameGenerator();
      const { ctx } = this.env;
      await ctx.resume();
      const token = await fetchRealtimeToken();
      this._set('starting', 'Connecting to OpenAI…');
      const pc = new RTCPeerConnection();
      this.pc = pc;
      const remote = new Promise((resolve) => {
        pc.ontrack = (event) => resolve(event.streams[0] ?? new MediaStream([event.track]));
      });
      try {
        this.mic = await navigator.mediaDevices.getUserMedia({
          audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
        });
        for (const track of this.mic.getAudioTracks()) pc.addTrack(track, this.mic);
        this.listening = true;
      } catch {
        pc.addTransceiver('audio', { direction: 'recvonly' });
        this.listening = false;
      }
      const dc = pc.createDataChannel('oai-events');
      this.dc = dc;
      dc.onmessage = (event) => {
        try {
          this._onEvent(JSON.parse(event.data));
        } catch {
          // not JSON: not an event of ours
        }
      };
      pc.onconnectionstatechange = () => {
        if (pc !== this.pc) return;
        if (pc.connectionState === 'failed' || pc.connectionState === 'closed') {
          this.stop(`The connection to OpenAI ${pc.connectionState === 'failed' ? 'failed' : 'closed'}.`);
          this.state = 'error';
          this.dispatchEvent(new CustomEvent('change'));
        }
      };
      await pc.setLocalDescription(await pc.createOffer());
      await iceGatheringDone(pc, ICE_GATHER_TIMEOUT_MS);
      const url = this.env.config.openai.realtime_calls_url;
      let response;
      try {
        response = await fetch(url, {
          method: 'POST',
          body: pc.localDescription.sdp,
          headers: { Authorization: `Bearer ${token.value}`, 'Content-Type': 'application/sdp' },
        });
      } catch (err) {
        throw new SourceError(`OpenAI cannot be reached (${url}): ${err.message}`);
      }
      if (!response.ok) {
        const detail = (await response.text()).slice(0, 200);
        throw new SourceError(`OpenAI refused the call (${response.status}) ${detail}`);
      }
      await pc.setRemoteDescription({ type: 'answer', sdp: await response.text() });
      const stream = await withTimeout(remote, 10000, 'OpenAI sent no audio track.');
      // Chromium only renders a remote track into Web Audio while a media element plays it;
      // the element stays muted, the listener hears the delayed, lip-synced copy.
      this.audioElement = new Audio();
      this.audioElement.muted = true;
      this.audioElement.srcObject = stream;
      this.audioElement.play().catch(() => {});
      const node = ctx.createMediaStreamSource(stream);
      this.untap = await tapLive(ctx, node, (chunk) => this._onChunk(chunk), this.chunkOptions);
      this._set('live', this.listening ? 'Connected: talk to the assistant.' : 'Connected (no microphone: listening only).');
    } catch (err) {
      this._release();
      this._fail(err);
    }
  }

  stop(message = 'Conversation ended.') {
    const wasOpen = this.gateOpen || this.env.stream.active;
    this._release();
    if (wasOpen) this.env.stream.end();
    this._speaking(false);
    this._set('idle', message);
  }

  /** The Interrupt button: also tell OpenAI to stop talking. */
  cancelResponse() {
    this._send({ type: 'response.cancel' });
    this._send({ type: 'output_audio_buffer.clear' });
    this._closeGate();
  }

  /** While the frame generator is away, let the user hear OpenAI directly (no lip sync). */
  setDirectMonitoring(on) {
    if (this.audioElement) this.audioElement.muted = !on;
  }

  _send(event) {
    if (this.dc?.readyState === 'open') this.dc.send(JSON.stringify(event));
  }

  _onChunk(chunk) {
    if (this.gateOpen) {
      this.env.stream.sendChunk(chunk);
      return;
    }
    this.preroll.push(chunk);
    if (this.preroll.length > PREROLL_CHUNKS) this.preroll.shift();
  }

  _onEvent(event) {
    this.events.push(event.type);
    if (this.events.length > 50) this.events.shift();
    switch (event.type) {
      case 'output_audio_buffer.started':
        clearTimeout(this._tailTimer);
        this._speaking(true);
        if (!this.gateOpen) {
          this.gateOpen = true;
          // The event can trail the first audio: send what just came in, then live audio.
          for (const chunk of this.preroll.splice(0)) this.env.stream.sendChunk(chunk);
        }
        break;
      case 'output_audio_buffer.stopped':
        this._speaking(false);
        clearTimeout(this._tailTimer);
        this._tailTimer = setTimeout(() => {
          if (!this.speaking) this._closeGate(true);
        }, SPEECH_TAIL_MS);
        break;
      case 'input_audio_buffer.speech_started':
        this._bargeIn('you started speaking');
        break;
      case 'output_audio_buffer.cleared':
        this._bargeIn('the assistant was cut off');
        break;
      case 'error':
        this._set(this.state, `OpenAI: ${event.error?.message ?? 'error'}`);
        break;
      default:
        break;
    }
  }

  _bargeIn(reason) {
    clearTimeout(this._tailTimer);
    const playing = this.gateOpen || this.env.stream.active || this.env.avSync.pending;
    this._speaking(false);
    this.gateOpen = false;
    this.preroll = [];
    if (playing) this.env.requestInterrupt(`barge-in: ${reason}`);
  }

  _closeGate(endSpeech = false) {
    clearTimeout(this._tailTimer);
    this.gateOpen = false;
    this.preroll = [];
    if (endSpeech) this.env.stream.end();
  }

  _release() {
    clearTimeout(this._tailTimer);
    this.gateOpen = false;
    this.preroll = [];
    this.untap?.();
    this.untap = null;
    for (const t of this.mic?.getTracks() ?? []) t.stop();
    this.mic = null;
    if (this.audioElement) {
      this.audioElement.srcObject = null;
      this.audioElement = null;
    }
    try {
      this.dc?.close();
      this.pc?.close();
    } catch {
      // already closed
    }
    this.dc = null;
    this.pc = null;
  }
}

function iceGatheringDone(pc, timeoutMs) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, timeoutMs); // post what we have: the peer finds the rest
    pc.addEventListener('icegatheringstatechange', () => {
      if (pc.iceGatheringState === 'complete') {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}

function withTimeout(promise, ms, message) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new SourceError(message)), ms);
    }),
  ]);
}
