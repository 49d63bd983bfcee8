"""lipstream as the face of voice-agent frameworks (docs/voice-agents.md).

``avatar_stream`` is the framework-free client: speech in, whole frames paired with their
audio out. ``pipecat`` adapts it to Pipecat (``pip install 'lipstream[pipecat]'``).
"""
