"""WebRTC out: the avatar composited on the server, sent with the voice as one synced pair of
tracks (``tracks``), one call per client (``peer``), offered at ``POST /api/webrtc/offer``."""
