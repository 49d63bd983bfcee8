from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BatchInferenceRequest(_message.Message):
    __slots__ = ("model_name", "frame_ids", "audio_override", "audio_pcm", "audio_sample_rate", "audio_start_sample", "first_frame_index", "session_id")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    FRAME_IDS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_OVERRIDE_FIELD_NUMBER: _ClassVar[int]
    AUDIO_PCM_FIELD_NUMBER: _ClassVar[int]
    AUDIO_SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    AUDIO_START_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    FIRST_FRAME_INDEX_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    frame_ids: _containers.RepeatedScalarFieldContainer[int]
    audio_override: str
    audio_pcm: bytes
    audio_sample_rate: int
    audio_start_sample: int
    first_frame_index: int
    session_id: str
    def __init__(self, model_name: _Optional[str] = ..., frame_ids: _Optional[_Iterable[int]] = ..., audio_override: _Optional[str] = ..., audio_pcm: _Optional[bytes] = ..., audio_sample_rate: _Optional[int] = ..., audio_start_sample: _Optional[int] = ..., first_frame_index: _Optional[int] = ..., session_id: _Optional[str] = ...) -> None: ...

class BatchInferenceResponse(_message.Message):
    __slots__ = ("responses", "total_processing_time_ms", "batch_frames", "queue_time_ms")
    RESPONSES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_PROCESSING_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    BATCH_FRAMES_FIELD_NUMBER: _ClassVar[int]
    QUEUE_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    responses: _containers.RepeatedCompositeFieldContainer[InferenceResponse]
    total_processing_time_ms: int
    batch_frames: int
    queue_time_ms: float
    def __init__(self, responses: _Optional[_Iterable[_Union[InferenceResponse, _Mapping]]] = ..., total_processing_time_ms: _Optional[int] = ..., batch_frames: _Optional[int] = ..., queue_time_ms: _Optional[float] = ...) -> None: ...

class InferenceResponse(_message.Message):
    __slots__ = ("success", "prediction_data", "bounds", "processing_time_ms", "model_name", "frame_id", "prediction_shape", "error", "frame_index")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_DATA_FIELD_NUMBER: _ClassVar[int]
    BOUNDS_FIELD_NUMBER: _ClassVar[int]
    PROCESSING_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_SHAPE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    FRAME_INDEX_FIELD_NUMBER: _ClassVar[int]
    success: bool
    prediction_data: bytes
    bounds: _containers.RepeatedScalarFieldContainer[float]
    processing_time_ms: int
    model_name: str
    frame_id: int
    prediction_shape: str
    error: str
    frame_index: int
    def __init__(self, success: bool = ..., prediction_data: _Optional[bytes] = ..., bounds: _Optional[_Iterable[float]] = ..., processing_time_ms: _Optional[int] = ..., model_name: _Optional[str] = ..., frame_id: _Optional[int] = ..., prediction_shape: _Optional[str] = ..., error: _Optional[str] = ..., frame_index: _Optional[int] = ...) -> None: ...

class LoadModelRequest(_message.Message):
    __slots__ = ("model_name", "package_path", "audio_override")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    PACKAGE_PATH_FIELD_NUMBER: _ClassVar[int]
    AUDIO_OVERRIDE_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    package_path: str
    audio_override: str
    def __init__(self, model_name: _Optional[str] = ..., package_path: _Optional[str] = ..., audio_override: _Optional[str] = ...) -> None: ...

class LoadModelResponse(_message.Message):
    __slots__ = ("success", "model_name", "message", "initialization_time_ms", "error", "model")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    INITIALIZATION_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    success: bool
    model_name: str
    message: str
    initialization_time_ms: int
    error: str
    model: ModelInfo
    def __init__(self, success: bool = ..., model_name: _Optional[str] = ..., message: _Optional[str] = ..., initialization_time_ms: _Optional[int] = ..., error: _Optional[str] = ..., model: _Optional[_Union[ModelInfo, _Mapping]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "version", "fps", "frame_count", "lookahead_ms", "lookahead_frames", "feature_window_frames", "feature_lookahead_frames", "video_width", "video_height", "runtime", "generator_width", "feature_sample_rate", "feature_alignment")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    FRAME_COUNT_FIELD_NUMBER: _ClassVar[int]
    LOOKAHEAD_MS_FIELD_NUMBER: _ClassVar[int]
    LOOKAHEAD_FRAMES_FIELD_NUMBER: _ClassVar[int]
    FEATURE_WINDOW_FRAMES_FIELD_NUMBER: _ClassVar[int]
    FEATURE_LOOKAHEAD_FRAMES_FIELD_NUMBER: _ClassVar[int]
    VIDEO_WIDTH_FIELD_NUMBER: _ClassVar[int]
    VIDEO_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    GENERATOR_WIDTH_FIELD_NUMBER: _ClassVar[int]
    FEATURE_SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    FEATURE_ALIGNMENT_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    fps: int
    frame_count: int
    lookahead_ms: float
    lookahead_frames: int
    feature_window_frames: int
    feature_lookahead_frames: int
    video_width: int
    video_height: int
    runtime: str
    generator_width: float
    feature_sample_rate: int
    feature_alignment: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., fps: _Optional[int] = ..., frame_count: _Optional[int] = ..., lookahead_ms: _Optional[float] = ..., lookahead_frames: _Optional[int] = ..., feature_window_frames: _Optional[int] = ..., feature_lookahead_frames: _Optional[int] = ..., video_width: _Optional[int] = ..., video_height: _Optional[int] = ..., runtime: _Optional[str] = ..., generator_width: _Optional[float] = ..., feature_sample_rate: _Optional[int] = ..., feature_alignment: _Optional[str] = ...) -> None: ...

class StreamRequest(_message.Message):
    __slots__ = ("audio", "frames", "interrupt")
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    INTERRUPT_FIELD_NUMBER: _ClassVar[int]
    audio: StreamAudio
    frames: StreamFrames
    interrupt: StreamInterrupt
    def __init__(self, audio: _Optional[_Union[StreamAudio, _Mapping]] = ..., frames: _Optional[_Union[StreamFrames, _Mapping]] = ..., interrupt: _Optional[_Union[StreamInterrupt, _Mapping]] = ...) -> None: ...

class StreamAudio(_message.Message):
    __slots__ = ("utterance", "start_sample", "pcm", "total_samples")
    UTTERANCE_FIELD_NUMBER: _ClassVar[int]
    START_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    PCM_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    utterance: int
    start_sample: int
    pcm: bytes
    total_samples: int
    def __init__(self, utterance: _Optional[int] = ..., start_sample: _Optional[int] = ..., pcm: _Optional[bytes] = ..., total_samples: _Optional[int] = ...) -> None: ...

class StreamFrames(_message.Message):
    __slots__ = ("request_id", "model_name", "utterance", "first_frame_index", "frame_ids", "deadline_ms", "session_id")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    UTTERANCE_FIELD_NUMBER: _ClassVar[int]
    FIRST_FRAME_INDEX_FIELD_NUMBER: _ClassVar[int]
    FRAME_IDS_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_MS_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    model_name: str
    utterance: int
    first_frame_index: int
    frame_ids: _containers.RepeatedScalarFieldContainer[int]
    deadline_ms: int
    session_id: str
    def __init__(self, request_id: _Optional[int] = ..., model_name: _Optional[str] = ..., utterance: _Optional[int] = ..., first_frame_index: _Optional[int] = ..., frame_ids: _Optional[_Iterable[int]] = ..., deadline_ms: _Optional[int] = ..., session_id: _Optional[str] = ...) -> None: ...

class StreamInterrupt(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StreamResponse(_message.Message):
    __slots__ = ("request_id", "frames", "error_code", "error")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    frames: BatchInferenceResponse
    error_code: int
    error: str
    def __init__(self, request_id: _Optional[int] = ..., frames: _Optional[_Union[BatchInferenceResponse, _Mapping]] = ..., error_code: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...
