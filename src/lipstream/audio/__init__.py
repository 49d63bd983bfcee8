"""Audio in: PCM decoding, resampling to 16 kHz, the mel front end and the feature timeline."""

from lipstream.audio.features import (
    Encoder,
    FeatureFrame,
    StreamingFeatureExtractor,
    offline_features,
    torch_encoder,
)
from lipstream.audio.mel import StreamingMel, melspectrogram
from lipstream.audio.pcm import (
    AudioChunk,
    decode_pcm16,
    decode_pcm16_base64,
    float_to_pcm16,
    pcm16_to_float,
)
from lipstream.audio.resample import StreamingResampler, resample
from lipstream.audio.timeline import (
    FPS,
    FRAME_FEATURE_SHAPE,
    SYNCTALK2D,
    FeatureLayout,
    frame_count,
)

__all__ = [
    "FPS",
    "FRAME_FEATURE_SHAPE",
    "SYNCTALK2D",
    "AudioChunk",
    "Encoder",
    "FeatureFrame",
    "FeatureLayout",
    "StreamingFeatureExtractor",
    "StreamingMel",
    "StreamingResampler",
    "decode_pcm16",
    "decode_pcm16_base64",
    "float_to_pcm16",
    "frame_count",
    "melspectrogram",
    "offline_features",
    "pcm16_to_float",
    "resample",
    "torch_encoder",
]
