"""What the lip-sync service keeps of a ``StreamLipSync`` stream: its audio and features.

A stream sends each utterance's 16 kHz audio once, in pieces that continue each other, and asks
for frames of it; the service computes each mel frame and encoder window once, with a
``StreamingFeatureExtractor`` per utterance, instead of again for every request. The
extractor follows the model of the request: a request for another model (another audio
encoder), or for frames behind the extractor, resumes a fresh extractor from the audio held.
So does a stream reopened on another instance after its first one died: the client sends
the audio the frames need again, about a second of it, and the features continue unchanged.

Audio is held from a little before what the next frames read (``RETAIN_SAMPLES`` behind, for
requests that arrive out of order) to what the client sent; frames computed ahead of their
request wait in ``ready``. Both are bounded. ``UtteranceFeatures.features`` runs on the
batcher's worker thread; ``add_audio`` and ``end`` on the event loop: a lock guards the audio.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from lipstream.audio import timeline as tl
from lipstream.audio.features import Encoder, StreamingFeatureExtractor
from lipstream.errors import InvalidInput

RETAIN_SAMPLES = tl.SAMPLE_RATE  # held behind the next frame's needs: one second
MAX_HELD_SAMPLES = 10 * tl.SAMPLE_RATE  # audio held ahead of the frames asked for, at most
MAX_UTTERANCES = 4  # per stream; the oldest is forgotten first
MAX_FRAMES_PAST_END = 64  # silent frames a request may ask for past an utterance's end


class AudioMissing(InvalidInput):
    """A request's frames need audio the stream has not sent (or the service no longer holds).

    The client answers it by sending the frames' audio again with the request.
    """


class UtteranceFeatures:
    """One utterance's audio as held by the service, and its features as they are computed.

    The audio (``_audio`` from ``_first``, and ``_generation``, which counts the times it was
    replaced) is shared with the event loop under ``_lock``; the extractor, the frames ready
    and how far the extractor was fed belong to the worker thread alone.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._audio = np.zeros(0, np.float32)
        self._first = 0  # utterance sample index of _audio[0]
        self._generation = 0  # +1 each time a separate piece replaced the audio
        self.total_samples: int | None = None  # known once the utterance has ended
        self._extractor: StreamingFeatureExtractor | None = None
        self._encoder: Encoder | None = None  # the encoder the extractor runs
        self._layout = tl.SYNCTALK2D  # and its feature layout
        self._ext_generation = -1  # the audio generation the extractor was fed from
        self._fed = 0  # utterance samples pushed into the extractor
        self._ready: dict[int, np.ndarray] = {}  # frames computed, not yet asked for

    @property
    def held_samples(self) -> tuple[int, int]:
        """The utterance samples ``[first, end)`` held now."""
        with self._lock:
            return self._first, self._first + len(self._audio)

    def add_audio(self, start: int, samples: np.ndarray) -> None:
        """Hold 16 kHz ``samples`` that start at utterance sample ``start``.

        A piece that overlaps or touches what is held extends it; a piece apart from it (the
        client started over, e.g. after an AudioMissing) replaces it.
        """
        if start < 0:
            raise InvalidInput(f"start_sample must be 0 or more, got {start}")
        samples = np.asarray(samples, dtype=np.float32)
        with self._lock:
            end, held_end = start + len(samples), self._first + len(self._audio)
            if len(self._audio) and self._first <= end and start <= held_end:
                lo = min(start, self._first)
                merged = np.zeros(max(end, held_end) - lo, np.float32)
                merged[self._first - lo : held_end - lo] = self._audio
                merged[start - lo : end - lo] = samples
                self._audio, self._first = merged, lo
            else:
                self._audio, self._first = samples, start  # never written in place
                self._generation += 1  # the extractor's audio is gone: it starts over
            if len(self._audio) > MAX_HELD_SAMPLES:
                raise InvalidInput(
                    f"the stream sent {len(self._audio) / tl.SAMPLE_RATE:.1f} s of audio ahead "
                    f"of the frames asked for; at most {MAX_HELD_SAMPLES // tl.SAMPLE_RATE} s "
                    "are held: send audio as the frames need it"
                )

    def end(self, total_samples: int) -> None:
        """The utterance has ended after ``total_samples`` samples (silence follows)."""
        if total_samples < 0:
            raise InvalidInput(f"total_samples must be 0 or more, got {total_samples}")
        self.total_samples = total_samples

    def features(
        self,
        encode: Encoder,
        first: int,
        count: int,
        layout: tl.FeatureLayout = tl.SYNCTALK2D,
    ) -> np.ndarray:
        """Generator inputs float32 [count, 32, 16, 16] of utterance frames ``first ..``.

        Equal to the same frames of ``offline_features`` over the whole utterance. Raises
        AudioMissing when the audio those frames read is not held, InvalidInput for frames
        far past the end of an utterance that has ended.
        """
        last = first + count - 1
        if count < 1 or first < 0:
            raise InvalidInput(f"frames count from 0: got first={first}, count={count}")
        total = self.total_samples
        if total is not None and last >= tl.frame_count(total) + MAX_FRAMES_PAST_END:
            raise InvalidInput(
                f"frame {last} is past the end of its utterance, which has "
                f"{tl.frame_count(total)} frames"
            )
        with self._lock:
            audio, start, generation = self._audio, self._first, self._generation
        if (
            self._encoder is not encode
            or self._layout != layout
            or self._ext_generation != generation
            or any(k not in self._ready for k in range(first, last + 1))
        ):
            try:
                self._compute(encode, layout, first, last, audio, start, generation)
            except BaseException:
                self._extractor = None  # half-fed: the next request starts a fresh one
                self._ready.clear()
                raise
        out = np.stack([self._ready.pop(k) for k in range(first, last + 1)])
        for k in [k for k in self._ready if k <= last]:
            del self._ready[k]
        with self._lock:  # what the next frames read, and a second more
            if self._generation == generation:
                keep = max(layout.first_sample_needed(last + 1) - RETAIN_SAMPLES, self._first)
                keep = min(keep, self._fed, self._first + len(self._audio))
                self._audio = self._audio[keep - self._first :]
                self._first = keep
        return out

    def _compute(
        self,
        encode: Encoder,
        layout: tl.FeatureLayout,
        first: int,
        last: int,
        audio: np.ndarray,
        start: int,
        generation: int,
    ) -> None:
        # feed only as far as the request reaches (and what is held): frames are not made
        # long before they are asked for
        end = min(start + len(audio), max(layout.samples_needed(last), self._fed))
        ext = self._extractor
        behind = ext is not None and any(
            k not in self._ready for k in range(first, min(ext.next_frame, last + 1))
        )
        stale = self._ext_generation != generation or self._fed < start
        if ext is None or self._encoder is not encode or self._layout != layout or behind or stale:
            self._extractor = None
            self._ready.clear()
            needed = max(layout.first_sample_needed(first), 0)
            if start > needed or end <= needed:
                raise AudioMissing(
                    f"frame {first} reads the utterance's audio from sample {needed} on; the "
                    f"stream holds samples {start}..{start + len(audio)}: send the frames' "
                    "audio again"
                )
            ext = StreamingFeatureExtractor(encode, layout=layout)
            self._store(ext.resume(first, audio[needed - start : end - start], needed))
            self._extractor, self._encoder, self._ext_generation = ext, encode, generation
            self._layout = layout
            self._fed = end
        elif end > self._fed:
            self._store(ext.push(audio[self._fed - start : end - start]))
            self._fed = end
        if last in self._ready:
            return
        total = self.total_samples
        if total is not None and self._fed >= total and start + len(audio) >= total:
            # continued with silence: every frame left, and as far as the request reaches
            reach = tl.frame_count(total) - 1
            if last > reach:
                silence = np.zeros(tl.SAMPLES_PER_FRAME * (last - reach), np.float32)
                self._store(ext.push(silence))
            self._store(ext.flush())
            self._extractor = None
        if last not in self._ready:
            raise AudioMissing(
                f"frame {last} needs the utterance's audio up to sample "
                f"{layout.samples_needed(last)}; the stream has sent up to {start + len(audio)}"
            )

    def _store(self, frames) -> None:
        for frame in frames:
            self._ready[frame.frame_index] = frame.features


class StreamState:
    """The utterances of one stream by the client's utterance number (a few at most)."""

    def __init__(self) -> None:
        self._utterances: OrderedDict[int, UtteranceFeatures] = OrderedDict()

    def utterance(self, number: int) -> UtteranceFeatures:
        """Utterance ``number``, new if unknown (the oldest one goes past MAX_UTTERANCES)."""
        found = self._utterances.get(number)
        if found is None:
            found = self._utterances[number] = UtteranceFeatures()
            while len(self._utterances) > MAX_UTTERANCES:
                self._utterances.popitem(last=False)
        return found

    def clear(self) -> None:
        """Forget every utterance (the client interrupted)."""
        self._utterances.clear()

    def __len__(self) -> int:
        return len(self._utterances)
