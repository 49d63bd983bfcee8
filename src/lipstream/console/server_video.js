// Server video: the console's mode for devices that should not composite. The page sends its
// audio (the microphone, or a file) to POST /api/webrtc/offer as a WebRTC call; the server
// answers with the avatar composited into whole frames and the same voice, one synced pair of
// tracks, which a <video> element plays. A data channel carries interrupt, set_model and stats.

import { ApiError, fetchConfig, offerCall } from './api.js';

const $ = (id) => document.getElementById(id);
const video = $('avatar-video');
const modelSelect = $('model-select');
const state = { call: 'idle', model: null, stats: null, error: null, messages: [] };
let iceServers = []; // WEBRTC_ICE_SERVERS, from GET /api/config
let current = null; // {pc, channel, ctx, stream, statsTimer}

function show(text, kind = 'info') {
  $('call-status').textContent = text;
  const banner = $('banner');
  banner.hidden = kind !== 'error';
  banner.dataset.kind = kind;
  $('banner-text').textContent = kind === 'error' ? text : '';
}

function setCall(value) {
  state.call = value;
  $('st-call').textContent = value;
  const live = value === 'connected' || value === 'connecting';
  $('mic-start').hidden = live;
  $('file-drop').hidden = live;
  $('hang-up').hidden = !live;
  $('interrupt').disabled = value !== 'connected';
}

async function loadModels() {
  const response = await fetch('/api/models', { cache: 'no-store' });
  if (!response.ok) throw new ApiError(`GET /api/models answered ${response.status}`);
  const models = (await response.json()).filter((m) => !m.error);
  modelSelect.replaceChildren(...models.map((m) => new Option(m.name, m.name)));
  const preferred = models.find((m) => m.name === 'demo') ?? models[0];
  if (preferred) modelSelect.value = preferred.name;
  modelSelect.disabled = models.length === 0;
  state.model = modelSelect.value || null;
}

/** Wait until the browser has gathered its ICE candidates (the server takes no trickle). */
function gathered(pc, timeoutMs = 5000) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState === 'complete') resolve();
    };
    pc.addEventListener('icegatheringstatechange', done);
    setTimeout(resolve, timeoutMs); // whatever was gathered by then
  });
}

/** Call the server with `track` (the voice) and play what comes back. */
async function startCall(track, extra = {}) {
  setCall('connecting');
  show('Calling the server…');
  const pc = new RTCPeerConnection({ iceServers });
  const channel = pc.createDataChannel('control');
  const remote = new MediaStream();
  current = { pc, channel, ...extra };
  pc.addTrack(track);
  pc.addTransceiver('video', { direction: 'recvonly' });
  pc.ontrack = (event) => {
    remote.addTrack(event.track);
    video.srcObject = remote;
  };
  pc.onconnectionstatechange = () => {
    if (pc.connectionState === 'connected') {
      setCall('connected');
      show(`Connected: the server sends ${state.model} with your voice, in sync.`);
    } else if (pc.connectionState === 'failed') {
      hangUp(`The call failed (no network path to the server: see WEBRTC_ICE_SERVERS).`, 'error');
    }
  };
  channel.onmessage = (event) => {
    const message = JSON.parse(event.data);
    state.messages.push(message.type);
    if (message.type === 'stats') {
      state.stats = message;
      $('st-latency').textContent = Math.round(message.pipeline_latency_ms ?? 0);
      $('st-late').textContent = message.webrtc?.late_ticks ?? '–';
      $('st-model').textContent = message.current_model ?? '–';
    } else if (message.type === 'error') {
      show(`The server said: ${message.message}`, 'error');
    }
  };
  channel.onopen = () => {
    current.statsTimer = setInterval(() => channel.send(JSON.stringify({ type: 'get_stats' })), 1000);
  };
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  const answer = await offerCall(pc.localDescription, state.model);
  await pc.setRemoteDescription({ type: 'answer', sdp: answer.sdp });
}

function hangUp(message = 'Not connected.', kind = 'info') {
  if (current) {
    clearInterval(current.statsTimer);
    current.pc.close();
    current.stream?.getTracks().forEach((t) => t.stop());
    current.ctx?.close();
    current = null;
  }
  video.srcObject = null;
  setCall('idle');
  show(message, kind);
}

async function startMicrophone() {
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    await startCall(stream.getAudioTracks()[0], { stream });
  } catch (err) {
    hangUp(`Could not start the call: ${err.message}`, 'error');
  }
}

async function playFile(file) {
  try {
    const ctx = new AudioContext();
    const buffer = await ctx.decodeAudioData(await file.arrayBuffer());
    const destination = ctx.createMediaStreamDestination();
    await startCall(destination.stream.getAudioTracks()[0], { ctx });
    const source = ctx.createBufferSource();
    source.buffer = buffer;
    source.connect(destination);
    source.onended = () => current?.channel.send(JSON.stringify({ type: 'end_of_speech' }));
    source.start();
  } catch (err) {
    hangUp(`Could not play ${file.name}: ${err.message}`, 'error');
  }
}

$('mic-start').addEventListener('click', startMicrophone);
$('file-input').addEventListener('change', (event) => {
  const [file] = event.target.files;
  if (file) playFile(file);
});
$('hang-up').addEventListener('click', () => hangUp());
$('interrupt').addEventListener('click', () => {
  current?.channel.send(JSON.stringify({ type: 'interrupt' }));
});
modelSelect.addEventListener('change', () => {
  state.model = modelSelect.value;
  if (current?.channel.readyState === 'open') {
    current.channel.send(JSON.stringify({ type: 'set_model', model_name: state.model }));
  }
});
setInterval(() => {
  const quality = video.getVideoPlaybackQuality?.();
  if (quality) $('st-frames').textContent = quality.totalVideoFrames;
}, 500);

// The tests' view of the page.
window.lipstream = {
  state: () => ({
    ...state,
    videoWidth: video.videoWidth,
    videoHeight: video.videoHeight,
    framesShown: video.getVideoPlaybackQuality?.().totalVideoFrames ?? 0,
    audioTracks: video.srcObject?.getAudioTracks().length ?? 0,
  }),
};

fetchConfig()
  .then((config) => {
    iceServers = config.webrtc?.ice_servers ?? [];
  })
  .catch((err) => show(`Could not read the server's settings: ${err.message}`, 'error'));
loadModels().catch((err) => show(`Could not list the models: ${err.message}`, 'error'));
