"""The gRPC lip-sync service: audio and avatar frame ids in, 320x320 JPEG mouth regions out.

``registry`` holds the loaded model packages, ``batcher`` runs requests from many callers in
shared forward passes, ``inputs`` turns a request into validated frames and audio features, and
``server`` is the ``grpc.aio`` server around them (``lipstream grpc`` runs it). The API is
documented in ``docs/lipsync-service.md``.
"""
