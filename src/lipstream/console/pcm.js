// The one place where the console resamples audio and cuts it into PCM16 chunks.
//
// Every source (remote WebRTC track, microphone, decoded file, synthesised speech) hands float
// samples at its own rate to a PcmEncoder and gets back Int16Array chunks at the frame
// generator's rate (24 kHz by default), each AUDIO_CHUNK_DURATION_MS long.

const PHASES = 256; // sub-sample positions of the polyphase table

/** Streaming windowed-sinc resampler: feed blocks, get blocks; state carries across calls. */
export class StreamResampler {
  constructor(inRate, outRate, { zeroCrossings = 12 } = {}) {
    if (!(inRate > 0 && outRate > 0)) throw new RangeError(`bad rates ${inRate} -> ${outRate}`);
    this.inRate = inRate;
    this.outRate = outRate;
    this.step = inRate / outRate; // input samples advanced per output sample
    // Low-pass below the lower Nyquist so downsampling does not fold highs into the speech band.
    const cutoff = 0.5 * Math.min(1, outRate / inRate) * 0.94; // cycles per input sample
    this.half = Math.ceil(zeroCrossings / (2 * cutoff)); // kernel half-width in input samples
    const taps = 2 * this.half;
    this.table = new Float32Array((PHASES + 1) * taps);
    for (let p = 0; p <= PHASES; p++) {
      const frac = p / PHASES;
      let sum = 0;
      for (let j = 0; j < taps; j++) {
        const x = j - this.half + 1 - frac; // distance from the output position
        const u = 2 * cutoff * x;
        const sinc = u === 0 ? 1 : Math.sin(Math.PI * u) / (Math.PI * u);
        const w = x / this.half;
        const win = Math.abs(w) >= 1 ? 0 : 0.42 + 0.5 * Math.cos(Math.PI * w) + 0.08 * Math.cos(2 * Math.PI * w);
        const v = 2 * cutoff * sinc * win;
        this.table[p * taps + j] = v;
        sum += v;
      }
      for (let j = 0; j < taps; j++) this.table[p * taps + j] /= sum; // unity gain at DC
    }
    this.reset();
  }

  reset() {
    // Start with half a kernel of silence so the first output sample lines up with input 0.
    this.buf = new Float32Array(this.half);
    this.pos = this.half;
  }

  /** Resample one block; returns the output samples it completes. */
  process(input) {
    if (this.inRate === this.outRate) return Float32Array.from(input);
    const buf = new Float32Array(this.buf.length + input.length);
    buf.set(this.buf);
    buf.set(input, this.buf.length);
    const taps = 2 * this.half;
    const out = new Float32Array(Math.ceil((buf.length - this.pos) / this.step) + 1);
    let n = 0;
    let pos = this.pos;
    while (Math.floor(pos) + this.half < buf.length) {
      const base = Math.floor(pos);
      const frac = pos - base;
      const row = Math.round(frac * PHASES) * taps;
      const start = base - this.half + 1;
      let acc = 0;
      for (let j = 0; j < taps; j++) {
        const i = start + j;
        if (i >= 0) acc += buf[i] * this.table[row + j];
      }
      out[n++] = acc;
      pos += this.step;
    }
    const drop = Math.max(0, Math.floor(pos) - this.half);
    this.buf = buf.slice(drop);
    this.pos = pos - drop;
    return out.subarray(0, n);
  }

  /** The samples still held back by the kernel, finished with silence. */
  flush() {
    const tail = this.process(new Float32Array(this.half + 1));
    this.reset();
    return tail;
  }
}

/** Float samples at any rate in, PCM16 chunks of a fixed duration at the target rate out. */
export class PcmEncoder {
  constructor(inRate, { outRate = 24000, chunkMs = 40 } = {}) {
    this.inRate = inRate;
    this.outRate = outRate;
    this.chunkMs = chunkMs;
    this.chunkSamples = Math.round((outRate * chunkMs) / 1000);
    this.resampler = new StreamResampler(inRate, outRate);
    this.pending = new Int16Array(this.chunkSamples);
    this.fill = 0;
  }

  /** Append float samples (mono, [-1, 1]); returns the whole chunks now complete. */
  push(samples) {
    return this._cut(this.resampler.process(samples));
  }

  /** Finish the stream: the last (possibly short) chunk, or none. */
  flush() {
    const chunks = this._cut(this.resampler.flush());
    if (this.fill > 0) chunks.push(this.pending.slice(0, this.fill));
    this.fill = 0;
    return chunks;
  }

  reset() {
    this.resampler.reset();
    this.fill = 0;
  }

  _cut(resampled) {
    const chunks = [];
    for (let i = 0; i < resampled.length; i++) {
      const s = Math.max(-1, Math.min(1, resampled[i]));
      this.pending[this.fill++] = s < 0 ? Math.round(s * 32768) : Math.round(s * 32767);
      if (this.fill === this.chunkSamples) {
        chunks.push(this.pending);
        this.pending = new Int16Array(this.chunkSamples);
        this.fill = 0;
      }
    }
    return chunks;
  }
}

/** Encode a whole decoded clip (mono float at inRate) into chunks, for file and text sources. */
export function encodeClip(samples, inRate, options) {
  const encoder = new PcmEncoder(inRate, options);
  const chunks = [];
  const block = 16384;
  for (let i = 0; i < samples.length; i += block) {
    for (const c of encoder.push(samples.subarray(i, i + block))) chunks.push(c);
  }
  for (const c of encoder.flush()) chunks.push(c);
  return chunks;
}

/** Mono mix of an AudioBuffer's channels. */
export function monoOf(audioBuffer) {
  const n = audioBuffer.numberOfChannels;
  if (n === 1) return audioBuffer.getChannelData(0);
  const out = new Float32Array(audioBuffer.length);
  for (let c = 0; c < n; c++) {
    const ch = audioBuffer.getChannelData(c);
    for (let i = 0; i < out.length; i++) out[i] += ch[i] / n;
  }
  return out;
}

/** Root-mean-square level of a PCM16 chunk, 0..1. */
export function rmsOf(int16) {
  let acc = 0;
  for (let i = 0; i < int16.length; i++) acc += int16[i] * int16[i];
  return int16.length ? Math.sqrt(acc / int16.length) / 32768 : 0;
}
