// The speech stream: where every source's PCM16 chunks go.
//
// A chunk is sent to the frame generator and, only if it was sent, scheduled for playback on the
// same timeline (AvSync), so what is heard is exactly what the mouth frames are made from.

import { rmsOf } from './pcm.js';

export class SpeechStream extends EventTarget {
  constructor({ client, avSync }) {
    super();
    this.client = client;
    this.avSync = avSync;
    this.active = false; // an utterance is open on the server's timeline
    this.level = 0; // RMS of the latest chunk, 0..1
    this.chunksSent = 0;
    this.chunksDropped = 0;
    this.lastChunkSamples = 0;
  }

  get connected() {
    return this.client.isOpen;
  }

  /**
   * Send one PCM16 chunk; false (and nothing played) when the frame generator is not there.
   * `options` ({live}) tell the playback clock how the source paces itself.
   */
  sendChunk(int16, options = {}) {
    this.level = rmsOf(int16);
    if (!this.client.sendAudio(int16)) {
      this.chunksDropped += 1;
      return false;
    }
    this.avSync.pushAudio(int16, { ...options, level: this.level });
    this.lastChunkSamples = int16.length;
    this.chunksSent += 1;
    if (!this.active) {
      this.active = true;
      this.dispatchEvent(new CustomEvent('speech', { detail: { active: true } }));
    }
    return true;
  }

  /** The utterance is over: the frame generator finishes it with silence. */
  end() {
    this.level = 0;
    if (!this.active) return;
    this.active = false;
    this.client.send({ type: 'end_of_speech' });
    this.avSync.endSpeech();
    this.dispatchEvent(new CustomEvent('speech', { detail: { active: false } }));
  }

  /** Barge-in: drop queued audio and frames here and on the server, at once. */
  interrupt() {
    this.level = 0;
    const wasActive = this.active;
    this.active = false;
    this.client.send({ type: 'interrupt' });
    this.avSync.interrupt();
    if (wasActive) this.dispatchEvent(new CustomEvent('speech', { detail: { active: false } }));
  }

  /** A new frame generator session: its timeline starts at 0 and nothing is open on it. */
  reset() {
    this.active = false;
    this.avSync.reset();
  }
}
