"""lipstream as the face of voice-agent frameworks (docs/voice-agents.md).

``pipecat`` (``pip install 'lipstream[pipecat]'``) and ``livekit`` (``lipstream[livekit]``)
adapt the frame generator's client, ``lipstream.frames.client.AvatarStream``, to each
framework; ``record_session`` is ``lipstream record``.
"""
