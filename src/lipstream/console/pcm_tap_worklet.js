// AudioWorklet that taps a live source (microphone, remote WebRTC track) on the audio thread.
//
// It mixes the input to mono and posts blocks of float samples at the AudioContext's rate to
// the main thread, where pcm.js resamples them to the frame generator's rate. Blocks of about
// 10 ms keep the message rate low without adding noticeable latency. The sample count it posts
// follows the AudioContext clock exactly, which is what keeps live sources from drifting
// against the playback clock.

class PcmTapProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const wanted = options?.processorOptions?.blockSize ?? Math.round(sampleRate / 100);
    this.block = Math.max(128, wanted);
    this.buf = new Float32Array(this.block);
    this.fill = 0;
    this.enabled = true;
    this.port.onmessage = (event) => {
      if (event.data?.type === 'enable') this.enabled = Boolean(event.data.value);
      if (event.data?.type === 'close') this.closed = true;
    };
  }

  process(inputs) {
    if (this.closed) return false;
    const input = inputs[0];
    // No connected input means no audio (not silence): post nothing.
    if (!this.enabled || !input || input.length === 0) return true;
    const channels = input.length;
    const frames = input[0].length;
    for (let i = 0; i < frames; i++) {
      let s = 0;
      for (let c = 0; c < channels; c++) s += input[c][i];
      this.buf[this.fill++] = s / channels;
      if (this.fill === this.block) {
        this.port.postMessage({ samples: this.buf, frame: currentFrame + i + 1 }, [this.buf.buffer]);
        this.buf = new Float32Array(this.block);
        this.fill = 0;
      }
    }
    return true;
  }
}

registerProcessor('pcm-tap', PcmTapProcessor);
