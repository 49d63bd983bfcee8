// Playback clock and frame scheduling: what the user hears and which mouth frame they see.
//
// How it works (one timeline with the frame generator, speech segments on the AudioContext
// clock, live and clip delays) is told in docs/console.md, "A/V sync".

const MIN_SCHEDULE_LEAD_S = 0.02; // a chunk due sooner than this starts a new segment
const MIN_DELAY_MS = 150; // never start playing sooner than this after the first chunk
const MAX_EXTRA_MS = 1500;
const MAX_QUEUED_FRAMES = 400;
const HOLD_MISSING_FRAMES = 2; // keep the last mouth this many frames when the next is late
const LATE_FRAMES_TO_REANCHOR = 3;
const CLIP_CUSHION_MS = 320; // frames a clip waits for before it starts playing
const CLIP_MAX_WAIT_S = 4; // ... but it plays after this long even without them
const CLIP_START_MARGIN_S = 0.05;
const SILENCE_LEVEL = 0.004; // RMS below which a chunk counts as silence (about -48 dBFS)
const RESYNC_STEP_MS = 40; // re-anchor a live segment in silence when its delay is this far off
// Until a live stream of this session has shown how late its frames come, its delay gets this
// much more, unless the server's figure already comes from measured frames (a warm server);
// the first silence after that gives back what was not needed.
const UNLEARNED_LIVE_MS = 150;
const OFFSET_WINDOW = 250; // paints in the rolling A/V offset statistics (a few seconds)
const OFFSET_HISTORY = 60000; // paints kept for the offset distribution (over 15 minutes)
// What a paint during speech showed, best first: the frame of the audio heard, the previous
// mouth held because that frame was not there yet, or the avatar with no mouth.
const PAINT_KINDS = ['onTime', 'held', 'noMouth'];

export class AvSync {
  constructor(ctx, destination, { sampleRate = 24000, frameMs = 40 } = {}) {
    this.ctx = ctx;
    this.destination = destination;
    this.frameMs = frameMs;
    // The server's figure (lookahead + processing) replaces this on connect.
    this.pipelineLatencyMs = 700;
    this.serverMeasured = false; // the server's figure comes from frames it measured
    this.safetyMs = 40; // decode, network and scheduling jitter on this side
    this.extraMs = 0; // learned from frames that came late
    this._nodes = new Set();
    this.setSampleRate(sampleRate);
  }

  /** The rate of the PCM16 the sources send (the frame generator session's); starts afresh. */
  setSampleRate(rate) {
    this.sampleRate = rate;
    this.samplesPerFrame = Math.round((rate * this.frameMs) / 1000);
    this.reset();
  }

  /** Forget everything: a new frame generator session starts at timeline 0. */
  reset() {
    this._stopAudio();
    this.timeline = 0; // samples on this session's timeline
    this.segments = [];
    this.frames = new Map();
    this.minFrameIndex = 0;
    this.lastShown = null;
    this._missedIndex = null;
    this.counters = {
      framesReceived: 0, // mouth frames that arrived
      framesShown: 0, // ... and were put on screen
      framesLate: 0, // ... arrived after their time had passed
      framesSkipped: 0, // ... were queued but their time passed without a paint
      framesDiscarded: 0, // ... belonged to audio dropped by an interrupt
      framesMissed: 0, // frame times with no mouth ready
      segments: 0,
      reanchors: 0,
      resyncs: 0, // live segments re-anchored in silence to a new delay
      audioChunks: 0,
    };
    this.offsets = []; // on-time paints, the last OFFSET_WINDOW
    this.offsetAll = { n: 0, sum: 0, min: Infinity, max: -Infinity };
    this.history = { onTime: [], held: [] }; // offsets of every paint of each kind, bounded
    this.paints = Object.fromEntries(PAINT_KINDS.map((k) => [k, 0])); // paints during speech
    this.slots = Object.fromEntries(PAINT_KINDS.map((k) => [k, 0])); // frame times, by best paint
    this._slot = null; // the frame time being painted: {index, best}
    this.silentMs = 0; // how long the latest chunks have been silent
    this.learnedLive = false; // a live segment of this session has had frames to learn from
  }

  /** The playback delay a new live segment gets, in ms. */
  get delayMs() {
    return this._liveDelayMs(this.segments[this.segments.length - 1]);
  }

  setPipelineLatency(ms, measured = false) {
    if (Number.isFinite(ms) && ms > 0) this.pipelineLatencyMs = ms;
    this.serverMeasured = Boolean(measured);
  }

  get current() {
    const seg = this.segments[this.segments.length - 1];
    return seg && seg.open ? seg : null;
  }

  /**
   * Schedule one chunk that was just sent to the frame generator.
   * `live`: the source runs at real-time pace (microphone, remote track) and cannot wait, so
   * frames arriving late make it start a new segment with a longer delay; otherwise (a clip
   * sent ahead of real time) the segment is held until its first frames are back.
   * `level`: the chunk's RMS level (0..1); silence lets a live segment change its delay.
   */
  pushAudio(int16, { live = true, level = 1 } = {}) {
    const now = this.ctx.currentTime;
    const silent = level < SILENCE_LEVEL;
    this.silentMs = silent ? this.silentMs + (int16.length / this.sampleRate) * 1000 : 0;
    let seg = this.current;
    let overSilence = false;
    if (seg && seg.ctxStart !== null && this._ctxTime(seg, this.timeline) < now + MIN_SCHEDULE_LEAD_S) {
      seg.open = false; // the source stalled longer than the delay: start again from here
      seg = null;
      this.counters.reanchors += 1;
    } else if (seg && seg.live && seg.ctxStart !== null && silent) {
      const delayMs = (this._ctxTime(seg, this.timeline) - now) * 1000;
      const wantedMs = this._liveDelayMs(seg);
      // Longer: the pause stretches. Shorter: only once everything still to play is silence.
      const longer = wantedMs - delayMs > RESYNC_STEP_MS;
      const shorter = delayMs - wantedMs > RESYNC_STEP_MS && this.silentMs >= delayMs;
      if (longer || shorter) {
        seg.open = false;
        seg = null;
        overSilence = shorter;
        this.counters.resyncs += 1;
      }
    }
    if (!seg) seg = this._openSegment(now, live, overSilence);
    if (seg.ctxStart === null) seg.held.push({ t: this.timeline, pcm: int16 });
    else this._schedule(int16, this._ctxTime(seg, this.timeline));
    this.timeline += int16.length;
    seg.tEnd = this.timeline;
    this.counters.audioChunks += 1;
  }

  _schedule(int16, when) {
    const buffer = this.ctx.createBuffer(1, int16.length, this.sampleRate);
    const data = buffer.getChannelData(0);
    for (let i = 0; i < int16.length; i++) data[i] = int16[i] / 32768;
    const node = this.ctx.createBufferSource();
    node.buffer = buffer;
    node.connect(this.destination);
    node.onended = () => this._nodes.delete(node);
    node.start(when);
    this._nodes.add(node);
  }

  /** Start a held clip segment once its cushion of frames is back (or it waited too long). */
  _maybeStart(seg, now = this.ctx.currentTime) {
    if (seg.ctxStart !== null) return;
    const firstFrame = Math.floor(seg.t0 / this.samplesPerFrame);
    const lastFrame = Math.ceil(seg.tEnd / this.samplesPerFrame) - 1;
    const cushion = Math.ceil((CLIP_CUSHION_MS + this.extraMs) / this.frameMs);
    const wanted = seg.open ? firstFrame + cushion - 1 : Math.min(firstFrame + cushion - 1, lastFrame);
    if (seg.maxFrameIn < wanted && now - seg.openedAt < CLIP_MAX_WAIT_S) return;
    const prev = this.segments[this.segments.indexOf(seg) - 1];
    const prevEnd = prev && prev.ctxStart !== null ? this._ctxTime(prev, prev.tEnd) : 0;
    seg.ctxStart = Math.max(now + CLIP_START_MARGIN_S, prevEnd);
    for (const { t, pcm } of seg.held) this._schedule(pcm, this._ctxTime(seg, t));
    seg.held = [];
  }

  /** A new segment; `overSilence`: it may start while the previous one still plays silence. */
  _openSegment(now, live, overSilence = false) {
    const prev = this.segments[this.segments.length - 1];
    const delayS = this._liveDelayMs(prev) / 1000; // what a live segment waits (clips are held)
    this.learnedLive ||= this._learnsLive(prev);
    this.extraMs = this._nextExtraMs(prev);
    // Never overlap audio still scheduled from the previous segment, unless it is silence.
    const prevEnd = prev && prev.ctxStart !== null && !overSilence ? this._ctxTime(prev, prev.tEnd) : 0;
    const seg = {
      t0: this.timeline,
      tEnd: this.timeline,
      ctxStart: live ? Math.max(now + delayS, prevEnd) : null,
      held: [],
      openedAt: now,
      open: true,
      live,
      maxFrameIn: -1,
      maxLateMs: 0,
      minSlackMs: Infinity,
      late: 0,
    };
    this.segments.push(seg);
    if (this.segments.length > 8) this.segments.shift();
    this.counters.segments += 1;
    return seg;
  }

  /** The delay a live segment opened after `prev` gets, in ms. */
  _liveDelayMs(prev) {
    const learned = this.learnedLive || this.serverMeasured || this._learnsLive(prev);
    const unlearned = learned ? 0 : UNLEARNED_LIVE_MS;
    return Math.max(MIN_DELAY_MS, this.pipelineLatencyMs + this.safetyMs + this._nextExtraMs(prev) + unlearned);
  }

  _learnsLive(prev) {
    return Boolean(prev && prev.live && Number.isFinite(prev.minSlackMs));
  }

  /** The extra delay after segment `prev`: cover its worst lateness, give back unused margin slowly. */
  _nextExtraMs(prev) {
    if (!prev || !Number.isFinite(prev.minSlackMs)) return this.extraMs; // no frames to learn from
    if (prev.maxLateMs > 0) return Math.min(MAX_EXTRA_MS, this.extraMs + prev.maxLateMs + 30);
    if (prev.minSlackMs > 200) return Math.max(0, this.extraMs - (prev.minSlackMs - 200) / 2);
    return this.extraMs;
  }

  _ctxTime(seg, t) {
    return seg.ctxStart + (t - seg.t0) / this.sampleRate;
  }

  /** The frame generator refused a chunk (`audio_buffer_full`): it is not on its timeline. */
  refused(samples) {
    this.timeline = Math.max(0, this.timeline - samples);
    const seg = this.current;
    if (seg) seg.tEnd = Math.max(seg.t0, this.timeline);
  }

  /** `end_of_speech` was sent: the timeline rounds up to a frame boundary; the segment closes. */
  endSpeech() {
    this.timeline = this._roundUp(this.timeline);
    const seg = this.current;
    if (seg) {
      seg.tEnd = this.timeline;
      seg.open = false;
      this._maybeStart(seg);
    }
  }

  /** `interrupt` was sent: silence now, drop every queued frame, round the timeline up. */
  interrupt() {
    this._closeSlot();
    this._stopAudio();
    this.timeline = this._roundUp(this.timeline);
    this.segments = [];
    this.minFrameIndex = this.timeline / this.samplesPerFrame;
    this.counters.framesDiscarded += this.frames.size;
    this.frames.clear();
    this.lastShown = null;
  }

  /** A `current_frame` arrived (`frame.index` is its frame_index); false if it is of no use. */
  addFrame(frame) {
    this.counters.framesReceived += 1;
    if (frame.index < this.minFrameIndex) {
      this.counters.framesDiscarded += 1; // made from audio an interrupt dropped
      return false;
    }
    const seg = this._segmentOf(frame.index);
    if (seg) seg.maxFrameIn = Math.max(seg.maxFrameIn, frame.index);
    if (seg && seg.ctxStart === null) this._maybeStart(seg);
    if (seg && seg.ctxStart !== null) {
      const slackMs = (this._ctxTime(seg, frame.index * this.samplesPerFrame) - this.ctx.currentTime) * 1000;
      seg.minSlackMs = Math.min(seg.minSlackMs, slackMs);
      if (slackMs < -this.frameMs) {
        this.counters.framesLate += 1;
        seg.maxLateMs = Math.max(seg.maxLateMs, -slackMs);
        seg.late += 1;
        // A live source never pauses by itself: after a few late frames the next chunk opens
        // a new segment with the longer delay (a short gap in the audio, then lip sync again).
        if (seg.live && seg.open && seg.late >= LATE_FRAMES_TO_REANCHOR) seg.open = false;
        return false;
      }
    }
    this.frames.set(frame.index, frame);
    if (this.frames.size > MAX_QUEUED_FRAMES) {
      const oldest = Math.min(...this.frames.keys());
      this.frames.delete(oldest);
      this.counters.framesSkipped += 1;
    }
    return true;
  }

  _segmentOf(index) {
    const t = index * this.samplesPerFrame;
    for (let i = this.segments.length - 1; i >= 0; i--) {
      const seg = this.segments[i];
      if (t + this.samplesPerFrame > seg.t0 && (t < seg.tEnd || seg.open)) return seg;
    }
    return null;
  }

  /** AudioContext time at which frame `index` starts playing, or null if not scheduled. */
  ctxTimeOfFrame(index) {
    const seg = this._segmentOf(index);
    return seg && seg.ctxStart !== null ? this._ctxTime(seg, index * this.samplesPerFrame) : null;
  }

  /** AudioContext time of the sample the listener hears at performance time `perfMs`. */
  audibleCtxTime(perfMs) {
    const ctx = this.ctx;
    if (typeof ctx.getOutputTimestamp === 'function') {
      const ts = ctx.getOutputTimestamp();
      if (ts.performanceTime > 0) return ts.contextTime + (perfMs - ts.performanceTime) / 1000;
    }
    return ctx.currentTime - (ctx.baseLatency || 0) - (ctx.outputLatency || 0);
  }

  /** Timeline position (ms) heard at performance time `perfMs`, or null outside speech. */
  positionAt(perfMs) {
    const c = this.audibleCtxTime(perfMs);
    for (let i = this.segments.length - 1; i >= 0; i--) {
      const seg = this.segments[i];
      if (seg.ctxStart === null) {
        this._maybeStart(seg); // a clip still waiting for its frames: has it waited too long?
        continue;
      }
      if (c >= seg.ctxStart && c < this._ctxTime(seg, seg.tEnd)) {
        return ((seg.t0 + (c - seg.ctxStart) * this.sampleRate) / this.sampleRate) * 1000;
      }
    }
    return null;
  }

  /** Is any speech still to be heard (open, playing or scheduled)? */
  get pending() {
    const c = this.audibleCtxTime(performance.now());
    return this.segments.some((s) => s.open || s.ctxStart === null || this._ctxTime(s, s.tEnd) > c);
  }

  /**
   * The mouth frame to present at performance time `presentMs` (when the next paint reaches the
   * screen). Returns null to show the idle avatar, else {frame, index, fresh, positionMs}, where
   * `frame` is null while speech plays but no mouth is ready (the avatar shows without one).
   */
  pick(presentMs) {
    const pos = this.positionAt(presentMs);
    if (pos === null) {
      this._closeSlot();
      this._dropStale(presentMs);
      this.lastShown = null;
      return null;
    }
    const k = Math.floor(pos / this.frameMs);
    this._dropBefore(k);
    const frame = this.frames.get(k);
    if (frame && frame.ready) {
      const fresh = !frame.shown;
      if (fresh) {
        frame.shown = true;
        this.counters.framesShown += 1;
      }
      this._recordPaint('onTime', k, this._offsetMs(pos, k));
      this.lastShown = frame;
      return { frame, index: k, fresh, positionMs: pos };
    }
    if (this._missedIndex !== k) {
      this._missedIndex = k;
      this.counters.framesMissed += 1;
    }
    if (this.lastShown && this.lastShown.index >= k - HOLD_MISSING_FRAMES) {
      this._recordPaint('held', k, this._offsetMs(pos, this.lastShown.index));
      return { frame: this.lastShown, index: this.lastShown.index, fresh: false, positionMs: pos };
    }
    this._recordPaint('noMouth', k, null);
    this.lastShown = null;
    return { frame: null, index: k, fresh: false, positionMs: pos };
  }

  /**
   * A/V offset of one paint, in ms: the audio heard minus the middle of the shown frame's 40 ms.
   * The right frame reads within +-20 (a 25 fps picture cannot do better); a frame held while
   * the next one is late reads 20-60 per frame it is behind; positive means audio leads.
   */
  _offsetMs(positionMs, index) {
    return positionMs - (index + 0.5) * this.frameMs;
  }

  /**
   * A/V offset statistics in ms over the on-time paints during speech: those that showed the
   * frame of the audio heard (see _offsetMs). Held paints are counted apart (syncStats).
   */
  offsetStats() {
    const w = this.offsets;
    const all = this.offsetAll;
    return {
      lastMs: w.length ? w[w.length - 1] : null,
      meanMs: all.n ? all.sum / all.n : null,
      recentMeanMs: w.length ? w.reduce((a, b) => a + b, 0) / w.length : null,
      minMs: all.n ? all.min : null,
      maxMs: all.n ? all.max : null,
      maxAbsMs: all.n ? Math.max(Math.abs(all.min), Math.abs(all.max)) : null,
      count: all.n,
    };
  }

  /**
   * How well speech was covered. `slots`: the 40 ms frame times during speech, each counted
   * once by the best it got (`onTime`: its own frame was painted; `held`: only the previous
   * mouth, its frame came late; `noMouth`: no mouth at all). `lateShare`: the share of frame
   * times whose frame came late (held or no mouth): delivery, not the clock. `paints`: the
   * same per paint. `offsets`: percentiles (ms) of the on-time and the held paints' offsets.
   */
  syncStats() {
    const slots = { ...this.slots };
    if (this._slot) slots[this._slot.best] += 1; // the frame time being painted now
    const total = PAINT_KINDS.reduce((n, k) => n + slots[k], 0);
    return {
      slots: { ...slots, total },
      lateShare: total ? (slots.held + slots.noMouth) / total : null,
      paints: { ...this.paints },
      offsets: {
        onTime: percentiles(this.history.onTime),
        held: percentiles(this.history.held),
      },
    };
  }

  queuedFrames() {
    return this.frames.size;
  }

  _recordPaint(kind, index, offsetMs) {
    this.paints[kind] += 1;
    if (offsetMs !== null) {
      const history = this.history[kind];
      history.push(offsetMs);
      if (history.length > OFFSET_HISTORY) history.shift();
    }
    if (kind === 'onTime') this._recordOffset(offsetMs);
    if (!this._slot || this._slot.index !== index) {
      this._closeSlot();
      this._slot = { index, best: kind };
    } else if (PAINT_KINDS.indexOf(kind) < PAINT_KINDS.indexOf(this._slot.best)) {
      this._slot.best = kind;
    }
  }

  /** Count the frame time painted until now by the best it got. */
  _closeSlot() {
    if (!this._slot) return;
    this.slots[this._slot.best] += 1;
    this._slot = null;
  }

  _recordOffset(ms) {
    this.offsets.push(ms);
    if (this.offsets.length > OFFSET_WINDOW) this.offsets.shift();
    const a = this.offsetAll;
    a.n += 1;
    a.sum += ms;
    a.min = Math.min(a.min, ms);
    a.max = Math.max(a.max, ms);
  }

  _dropBefore(k) {
    for (const [index, frame] of this.frames) {
      if (index < k) {
        this.frames.delete(index);
        if (!frame.shown) this.counters.framesSkipped += 1;
      }
    }
  }

  _dropStale(presentMs) {
    // Outside speech: keep frames still to come, drop those whose time has passed.
    const heard = this.audibleCtxTime(presentMs);
    for (const [index, frame] of this.frames) {
      const seg = this._segmentOf(index);
      if (seg && seg.ctxStart === null) continue; // its clip has not started yet
      const due = this.ctxTimeOfFrame(index);
      if (due === null || due + this.frameMs / 1000 < heard) {
        this.frames.delete(index);
        if (!frame.shown) this.counters.framesSkipped += 1;
      }
    }
  }

  _roundUp(samples) {
    return Math.ceil(samples / this.samplesPerFrame) * this.samplesPerFrame;
  }

  _stopAudio() {
    for (const node of this._nodes) {
      try {
        node.onended = null;
        node.stop();
        node.disconnect();
      } catch {
        // already stopped
      }
    }
    this._nodes = new Set();
  }
}

/** {count, p50, p95, p99, min, max} of `values` (ms), nulls when there are none. */
function percentiles(values) {
  if (!values.length) return { count: 0, p50: null, p95: null, p99: null, min: null, max: null };
  const sorted = Float64Array.from(values).sort();
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor((q / 100) * sorted.length))];
  return { count: sorted.length, p50: at(50), p95: at(95), p99: at(99), min: sorted[0], max: sorted[sorted.length - 1] };
}
