// OpenAI Realtime as an audio source: the assistant's voice, received over WebRTC, drives the
// mouth; its data-channel events say when it speaks and when the user barges in.

import { fetchRealtimeToken } from './api.js';
import { AudioSource, SourceError, tapLive } from './audio_sources.js';

const PREROLL_CHUNKS = 5; // remote audio kept from before `output_audio_buffer.started`
const SPEECH_TAIL_MS = 300; // remote audio still arriving after `output_audio_buffer.stopped`
const ICE_GATHER_TIMEOUT_MS = 2000;

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
