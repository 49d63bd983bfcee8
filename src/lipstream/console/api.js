// The web server's HTTP API, as the console uses it.

/** An HTTP call that failed, with the server's error code and message when it sent them. */
export class ApiError extends Error {
  constructor(message, { status = 0, code = null } = {}) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

async function call(path, options = {}) {
  let response;
  try {
    response = await fetch(path, { cache: 'no-store', ...options });
  } catch (err) {
    throw new ApiError(`the web server cannot be reached (${path}): ${err.message}`);
  }
  if (!response.ok) {
    let code = null;
    let message = `${options.method ?? 'GET'} ${path} answered ${response.status}`;
    try {
      const body = await response.json();
      if (body?.error) {
        code = body.error.code ?? null;
        message = body.error.message ?? message;
      }
    } catch {
      // not JSON: keep the status line
    }
    throw new ApiError(message, { status: response.status, code });
  }
  return response;
}

/** GET /api/config */
export async function fetchConfig() {
  return (await call('/api/config')).json();
}

/** POST /token: an ephemeral OpenAI Realtime key, {value, expiresAt}. */
export async function fetchRealtimeToken() {
  const body = await (await call('/token', { method: 'POST' })).json();
  const value = body?.client_secret?.value ?? body?.value;
  if (!value) throw new ApiError('POST /token answered without a key');
  return { value, expiresAt: body?.client_secret?.expires_at ?? body?.expires_at ?? null };
}

/** POST /api/tts: the text as speech, an encoded audio file (ArrayBuffer). */
export async function synthesize(text) {
  const response = await call('/api/tts', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ text }),
  });
  return response.arrayBuffer();
}

/** POST /api/session: a fresh session token, as the WebSocket address that carries it. */
export async function fetchSessionUrl() {
  const body = await (await call('/api/session', { method: 'POST' })).json();
  if (!body?.websocket_url) throw new ApiError('POST /api/session answered without an address');
  return body.websocket_url;
}

/** The frame generator's WebSocket address for this page. */
export function websocketUrl(config, location = window.location) {
  if (config.websocket_url) return config.websocket_url;
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const host = location.hostname.includes(':') ? `[${location.hostname}]` : location.hostname;
  return `${scheme}://${host}:${config.websocket_port ?? 8080}/`;
}

/** POST /api/webrtc/offer: the server's answer to a WebRTC offer, {sdp, type, peer_id, model}. */
export async function offerCall(offer, model) {
  const response = await call('/api/webrtc/offer', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ sdp: offer.sdp, type: offer.type, model }),
  });
  return response.json();
}
