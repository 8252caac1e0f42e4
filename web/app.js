// tessera web client: join a room, send camera and microphone once, receive
// the server's mixed grid and your own mix-minus audio. Protocol: docs/protocol.md.
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const debug = params.has('debug');
// ?token=...: a room token (servers with an auth secret need one).
const roomToken = params.get('token');
const TOKEN_TEXT = {
  missing_token: 'This server needs an invitation link with a room token (?token=...). Ask the person who invited you for the link.',
  invalid_token: 'The room token in this link is not valid for this server. Ask for a new link.',
  expired_token: 'The room token in this link has expired. Ask for a new link.',
  token_not_yet_valid: 'The room token in this link is not valid yet. Try again later, or check this computer\'s clock.',
};
/** The room and name a token carries (its payload is plain base64url JSON). */
function tokenClaims(t) {
  try {
    const b = t.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(decodeURIComponent(escape(atob(b))));
  } catch (e) { return null; }
}
// ?watch=1: a watch-only link: the page never asks for camera or
// microphone and joins as a receive-only viewer.
const watchLink = params.get('watch') === '1';
// ?relay=1: use TURN relays only (checks a TURN deployment).
const relayOnly = params.get('relay') === '1';
// ?codec=h264 or ?codec=vp8: answer with that video codec only, so the
// server sends it and expects it (H.264 is cheaper on phones with hardware
// decoders). Without it the browser keeps the server's order (VP8 first).
const preferredCodec = (params.get('codec') || '').toLowerCase();
const CODEC_MIME = { h264: 'video/h264', vp8: 'video/vp8' };

/** Restrict a video transceiver to ?codec=, when the browser can. */
function preferCodec(t) {
  const mime = CODEC_MIME[preferredCodec];
  if (!mime || t.receiver.track.kind !== 'video' || !t.setCodecPreferences || !window.RTCRtpReceiver.getCapabilities) return;
  const all = RTCRtpReceiver.getCapabilities('video').codecs;
  const wanted = all.filter((c) => c.mimeType.toLowerCase() === mime
    && (mime !== 'video/h264' || /packetization-mode=1/.test(c.sdpFmtpLine || '')));
  if (!wanted.length) { console.warn(`this browser cannot receive ${preferredCodec}; keeping the default`); return; }
  // Retransmission and error-correction entries go with the chosen codec.
  const extras = all.filter((c) => /\/(rtx|red|ulpfec)$/i.test(c.mimeType));
  t.setCodecPreferences([...wanted, ...extras]);
}

/** Send video in ?codec= too: an answer lists what its author receives, and
 * a browser sends the offer's first codec (VP8) unless told otherwise. */
async function sendPreferredCodec(pc) {
  const mime = CODEC_MIME[preferredCodec];
  if (!mime) return;
  for (const sender of pc.getSenders()) {
    if (!sender.track || sender.track.kind !== 'video') continue;
    const p = sender.getParameters();
    const codec = (p.codecs || []).find((c) => c.mimeType.toLowerCase() === mime);
    if (!codec || !p.encodings || !p.encodings.length) { console.warn(`cannot send ${preferredCodec} from this browser`); continue; }
    p.encodings[0].codec = codec;
    try { await sender.setParameters(p); } catch (e) { console.warn(`sending ${preferredCodec}: ${e.message}`); }
  }
}
// Browsers give camera and microphone only to secure pages (HTTPS or localhost).
const SECURE_TEXT = 'This page was not opened over a secure connection (HTTPS), so the browser gives it no camera or microphone. '
  + 'Open it with https:// (the server needs --tls-cert and --tls-key, or --tls-self-signed for a LAN demo), or from localhost. '
  + 'You can still join to watch and listen.';
const RELAY_FAILED_TEXT = 'Relay only (?relay=1): the TURN server gave no relay address. It may be unreachable, or it refused the '
  + 'credentials (the server\'s turn_secret must be the TURN server\'s static-auth-secret).';
const ICE_FAILED_TEXT = 'The media connection could not be set up (ICE failed): your network may block the direct path to the server. '
  + 'Behind a firewall or a strict NAT the server needs a TURN server (see docs/deploy.md).';

const ERROR_TEXT = {
  room_full: 'This room is full.',
  invalid_field: 'The server did not accept what was sent',
  media_failed: 'The media connection failed.',
  not_joined: 'You are not in a room.',
  already_joined: 'You are already in this room.',
  internal: 'The server hit an internal error.',
  too_many_rooms: 'The server runs as many rooms as it may; try again later.',
  too_many_connections: 'Too many connections from your network address.',
  rate_limited: 'Too many messages or joins at once; slowing down.',
  media_timeout: 'The server stopped receiving your camera and microphone; reconnecting.',
  idle_timeout: 'The server heard nothing from this page for too long; reconnecting.',
  chat_too_long: 'That chat message is too long',
  share_busy: 'Someone else is sharing their screen',
  share_ended: 'Your screen share ended',
  forbidden: 'Not allowed',
  server_draining: 'The server is restarting; reconnecting',
  cluster_unavailable: 'The room cannot be reached right now; reconnecting',
  room_moved: 'The room moved to another server; reconnecting',
};
// Errors after which rejoining automatically would only fail again.
const FATAL = new Set(['room_full', 'invalid_field', 'missing_field', 'too_many_rooms']);

const state = {
  room: '', name: '', ws: null, pc: null, local: null, viewer: false,
  micMuted: false, camOff: false, selfView: true,
  myId: null, layout: null, sendSize: null, speaker: null, quality: null, iceServers: [],
  // Screen sharing: the key from `joined`, and the share connection
  // ({ stream, track, ws, pc, sendSize }) while sharing.
  shareKey: null, share: null,
  leaving: true, attempt: 0, reconnectTimer: null, disconnectTimer: null,
  statsTimer: null, lastSample: null, stats: {}, connectedAt: 0,
  // Chat: messages by key (history and live may overlap), unread count,
  // whether the panel shows (hidden on phones until opened).
  chat: [], chatKeys: new Set(), unread: 0, chatOpen: !window.matchMedia('(max-width: 720px)').matches,
};

function log(...a) { if (debug) console.log(...a); }
function status(text) { $('status').textContent = text; }
function showError(text) { const e = $('error'); e.textContent = text || ''; e.hidden = !text; }
function send(msg) { if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(msg)); }

// ---------- join screen: devices and preview ----------

async function listDevices() {
  let devices = [];
  if (!navigator.mediaDevices) return;
  try { devices = await navigator.mediaDevices.enumerateDevices(); } catch (e) { return; }
  for (const [kind, sel] of [['videoinput', $('camera-select')], ['audioinput', $('mic-select')], ['videoinput', $('room-camera-select')], ['audioinput', $('room-mic-select')]]) {
    const current = sel.value;
    const opts = devices.filter((d) => d.kind === kind).map((d, i) => {
      const o = document.createElement('option');
      o.value = d.deviceId; o.textContent = d.label || `${kind === 'videoinput' ? 'Camera' : 'Microphone'} ${i + 1}`;
      return o;
    });
    const none = document.createElement('option');
    none.value = 'none'; none.textContent = kind === 'videoinput' ? 'No camera' : 'No microphone';
    sel.replaceChildren(...opts, none);
    if (current && [...sel.options].some((o) => o.value === current)) sel.value = current;
  }
}

async function openMedia() {
  if (!window.isSecureContext || !navigator.mediaDevices) return null;
  const cam = $('camera-select').value;
  const mic = $('mic-select').value;
  const video = cam === 'none' ? false : { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 30 }, ...(cam ? { deviceId: { exact: cam } } : {}) };
  const audio = mic === 'none' ? false : { echoCancellation: true, noiseSuppression: true, ...(mic ? { deviceId: { exact: mic } } : {}) };
  const tries = [{ video, audio }, { video: false, audio }, { video, audio: false }].filter((c) => c.video || c.audio);
  for (const c of tries) {
    try { return await navigator.mediaDevices.getUserMedia(c); } catch (e) { log('getUserMedia failed', c, e.name); }
  }
  return null;
}

function stopLocal() {
  if (state.local) state.local.getTracks().forEach((t) => t.stop());
  state.local = null;
  $('preview').srcObject = null;
}

async function startPreview() {
  stopLocal();
  state.local = await openMedia();
  const hasVideo = !!(state.local && state.local.getVideoTracks().length);
  const hasAudio = !!(state.local && state.local.getAudioTracks().length);
  $('preview').srcObject = hasVideo ? state.local : null;
  $('preview-note').textContent = !window.isSecureContext || !navigator.mediaDevices ? SECURE_TEXT
    : hasVideo && hasAudio ? ''
    : hasAudio ? 'No camera available: you will join with audio only.'
      : hasVideo ? 'No microphone available: you will join with video only.'
        : 'No camera or microphone: you will join to watch and listen only.';
  await listDevices();
}

// ---------- the call ----------

function teardownConnection() {
  stopShare();
  clearTimeout(state.disconnectTimer);
  clearInterval(state.statsTimer);
  if (state.pc) { state.pc.onconnectionstatechange = null; state.pc.close(); }
  if (state.ws) { state.ws.onclose = null; state.ws.onmessage = null; state.ws.close(); }
  state.pc = null; state.ws = null; state.myId = null; state.sendSize = null; state.shareKey = null;
  $('rec-badge').hidden = true;
}

function scheduleReconnect(reason) {
  if (state.leaving) return;
  teardownConnection();
  clearTimeout(state.reconnectTimer);
  // Jittered exponential backoff: ~0.4 s, 0.8 s, 1.6 s, then at most 3 s.
  const base = Math.min(3000, 400 * 2 ** state.attempt);
  const delay = Math.round(base * (0.75 + Math.random() * 0.5));
  state.attempt += 1;
  status(`Reconnecting… (${reason}; attempt ${state.attempt})`);
  log('reconnect in', delay);
  state.reconnectTimer = setTimeout(connect, delay);
}

/** The signaling URL (with the room token, when the page has one). */
function wsUrl() {
  const proto = location.protocol === 'https:' ? 'wss' : 'ws';
  const query = roomToken ? `?token=${encodeURIComponent(roomToken)}` : '';
  return { proto, query, url: `${proto}://${location.host}/ws${query}` };
}

function connect() {
  const { proto, query, url } = wsUrl();
  const ws = new WebSocket(url);
  state.ws = ws;
  let opened = false;
  ws.onopen = () => {
    opened = true;
    send({ type: 'join', room: state.room, name: state.name, quality: $('quality-select').value, ...(state.viewer ? { role: 'viewer' } : {}) });
  };
  ws.onclose = async () => {
    // Browsers do not tell pages why a WebSocket failed. A refused token
    // answers a plain GET with 401 and its reason: ask.
    if (!opened) {
      const why = await fetch(`/ws${query}`).then(async (r) => (r.status === 401 || r.status === 429 ? r.json() : null)).catch(() => null);
      if (why && why.code) {
        showError(`${TOKEN_TEXT[why.code] || ERROR_TEXT[why.code] || 'The server refused this link'} (${why.code}: ${why.message})`);
        leave();
        return;
      }
    }
    // Never opened over wss:// is most often a certificate the browser
    // does not trust.
    if (!opened && proto === 'wss' && state.attempt >= 1) {
      showError(`Cannot reach the server at ${proto}://${location.host}/ws. If it uses a self-signed certificate, open https://${location.host}/ in this browser and accept the certificate, then try again.`);
    }
    scheduleReconnect(opened ? 'connection lost' : 'server unreachable');
  };
  ws.onerror = () => {};
  ws.onmessage = (ev) => onMessage(ev.data).catch((e) => log('message handling failed', e));
}

async function onMessage(data) {
  let msg;
  try { msg = JSON.parse(data); } catch (e) { return; }
  log('recv', msg.type);
  switch (msg.type) {
    case 'joined':
      state.myId = msg.id;
      // A receive-only token makes any join a viewer's.
      if (msg.role === 'viewer') { state.viewer = true; stopLocal(); }
      state.iceServers = Array.isArray(msg.ice_servers) ? msg.ice_servers : [];
      state.shareKey = msg.share_key || null;
      showRoom();
      status(`Joined ${msg.room}${state.viewer ? ' to watch' : ''}; connecting media…`);
      if (!state.viewer && (state.micMuted || state.camOff)) send({ type: 'mute', audio: state.micMuted, video: state.camOff });
      break;
    case 'offer': await onOffer(msg.sdp); break;
    case 'ice': {
      const c = { candidate: msg.candidate, sdpMLineIndex: msg.sdpMLineIndex };
      if (state.pc) await state.pc.addIceCandidate(c).catch((e) => log('addIceCandidate', e));
      break;
    }
    case 'chat': addChat([msg]); break;
    case 'chat_history': addChat(Array.isArray(msg.messages) ? msg.messages : []); break;
    case 'layout': state.layout = msg; renderLayout(); break;
    case 'speaking': state.speaker = msg.id; renderLayout(); break;
    case 'send_size': state.sendSize = msg; await applySendSize(); break;
    case 'quality':
      // Shown in the stats panel; the status line only for audio only.
      if (msg.rung === 'audio') status('Your connection is too weak for video right now: audio only. Video comes back when it improves.');
      else if (state.quality && state.quality.rung === 'audio') status(`Connected to ${state.room}`);
      state.quality = msg;
      break;
    case 'removed':
      // An operator took us out: do not rejoin on our own.
      leave();
      showError(`You were removed from the room: ${msg.reason}`);
      break;
    case 'recording':
      // Everyone in the room is told while it is recorded.
      $('rec-badge').hidden = !msg.active;
      break;
    case 'muted':
      // An operator muted (or unmuted) our microphone in the mix.
      if (state.micMuted !== !!msg.audio) {
        state.micMuted = !!msg.audio;
        if (state.local) state.local.getAudioTracks().forEach((t) => { t.enabled = !state.micMuted; });
        setPressed($('mic-btn'), state.micMuted, state.micMuted ? 'Unmute' : 'Mute');
      }
      status(msg.audio ? 'An organiser muted your microphone.' : `Connected to ${state.room}`);
      break;
    case 'error': {
      showError(`${ERROR_TEXT[msg.code] || 'Error'}: ${msg.message} (${msg.code})`);
      if (FATAL.has(msg.code) && !state.myId) { leave(); }
      if ((msg.code === 'media_failed' || msg.code === 'media_timeout') && state.myId) scheduleReconnect('media failed');
      // A cluster placing the room anew (its node died): try again soon.
      if (msg.code === 'cluster_unavailable' && !state.myId) scheduleReconnect('the room is moving');
      break;
    }
    default: break;
  }
}

async function onOffer(sdp) {
  const pc = new RTCPeerConnection({ iceServers: state.iceServers, iceTransportPolicy: relayOnly ? 'relay' : 'all' });
  state.pc = pc;
  let found = 0;
  pc.onicecandidate = (e) => {
    if (e.candidate && e.candidate.candidate) {
      found += 1;
      send({ type: 'ice', candidate: e.candidate.candidate, sdpMLineIndex: e.candidate.sdpMLineIndex });
    }
  };
  // Nothing gathered: no path can ever work; say why now.
  pc.onicegatheringstatechange = () => {
    if (pc !== state.pc || pc.iceGatheringState !== 'complete' || found > 0) return;
    showError(relayOnly ? RELAY_FAILED_TEXT : ICE_FAILED_TEXT);
  };
  const remote = new MediaStream();
  $('mix').srcObject = remote;
  pc.ontrack = (e) => { remote.addTrack(e.track); $('mix').play().catch(() => {}); };
  pc.onconnectionstatechange = () => onConnectionState(pc);
  await pc.setRemoteDescription({ type: 'offer', sdp });
  for (const t of pc.getTransceivers()) {
    const kind = t.receiver.track.kind;
    preferCodec(t);
    // A viewer (by choice, or by its token) sends nothing.
    const track = !state.viewer && state.local && state.local.getTracks().find((x) => x.kind === kind);
    if (track) {
      track.enabled = kind === 'audio' ? !state.micMuted : !state.camOff;
      await t.sender.replaceTrack(track);
      t.direction = 'sendrecv';
    } else {
      t.direction = 'recvonly';
    }
  }
  const answer = await pc.createAnswer();
  await pc.setLocalDescription(answer);
  send({ type: 'answer', sdp: pc.localDescription.sdp });
  await sendPreferredCodec(pc);
  await applySendSize();
  if (state.local) state.local.getTracks().forEach(watchTrack);
  for (const [kind, sel] of [['video', $('room-camera-select')], ['audio', $('room-mic-select')]]) {
    const t = state.local && state.local.getTracks().find((x) => x.kind === kind);
    if (t && deviceOf(t)) sel.value = deviceOf(t);
  }
}

function onConnectionState(pc) {
  if (pc !== state.pc) return;
  const s = pc.connectionState;
  clearTimeout(state.disconnectTimer);
  if (s === 'connected') {
    state.attempt = 0;
    if ($('error').textContent === ICE_FAILED_TEXT) showError('');
    state.connectedAt = Date.now();
    status(`Connected to ${state.room}`);
    startStats();
  } else if (s === 'failed') {
    showError(!relayOnly ? ICE_FAILED_TEXT : state.iceServers.some((x) => x.urls.some((u) => u.startsWith('turn')))
      ? RELAY_FAILED_TEXT : 'Relay only (?relay=1) was asked for, but the server gave no TURN server.');
    scheduleReconnect('media connection failed');
  } else if (s === 'disconnected') {
    status('Connection unstable…');
    state.disconnectTimer = setTimeout(() => { if (state.pc === pc && pc.connectionState !== 'connected') scheduleReconnect('media connection lost'); }, 4000);
  } else {
    status(`Media: ${s}`);
  }
}

// Send at tile size: no more pixels or bits than the grid shows of us.
async function applySendSize() {
  if (state.pc && state.sendSize) await fitSender(state.pc, state.sendSize);
}

/** Scale and cap `pc`'s video sender to a `send_size` hint. */
async function fitSender(pc, size) {
  const tr = pc.getTransceivers().find((t) => t.sender.track && t.sender.track.kind === 'video');
  if (!tr) return;
  const settings = tr.sender.track.getSettings();
  const w = settings.width || 640;
  const h = settings.height || 360;
  // A cropped tile is covered (the server cuts the overflow), a
  // letterboxed one contained; never scaled up.
  const sx = w / size.width, sy = h / size.height;
  const scale = Math.max(1, size.fit === 'letterbox' ? Math.max(sx, sy) : Math.min(sx, sy));
  const p = tr.sender.getParameters();
  if (!p.encodings || !p.encodings.length) p.encodings = [{}];
  p.encodings[0].scaleResolutionDownBy = scale;
  p.encodings[0].maxBitrate = size.max_bitrate;
  // A shared screen: fewer frames, each sharp (text stays readable).
  if (size.max_framerate) {
    p.encodings[0].maxFramerate = size.max_framerate;
    p.degradationPreference = 'maintain-resolution';
  }
  try { await tr.sender.setParameters(p); log('send size', scale, size.max_bitrate); } catch (e) { log('setParameters', e); }
}

// ---------- screen sharing ----------
// A second connection, `join` with role "share" and this participant's
// share key: the server puts its video in the presentation layout's share
// slot (docs/protocol.md, Screen sharing). The main connection is untouched.

async function toggleShare() {
  if (state.share) { stopShare(); return; }
  if (!navigator.mediaDevices || !navigator.mediaDevices.getDisplayMedia) {
    showError('This browser cannot share a screen (no getDisplayMedia; phones mostly cannot).');
    return;
  }
  if (!state.shareKey || !state.myId) { showError('Screen sharing is off on this server, or you are not in the room yet.'); return; }
  let stream;
  try {
    stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: 15 }, audio: false });
  } catch (e) {
    if (e.name !== 'NotAllowedError') showError(`Screen sharing could not start: ${e.message}`);
    return;
  }
  const track = stream.getVideoTracks()[0];
  if (!track) return;
  // Text and lines, not motion: browsers keep resolution before frame rate.
  if ('contentHint' in track) track.contentHint = 'detail';
  const share = { stream, track, ws: null, pc: null, sendSize: null };
  state.share = share;
  // The browser's own "Stop sharing" ends the track.
  track.onended = () => { if (state.share === share) stopShare(); };
  const ws = new WebSocket(wsUrl().url);
  share.ws = ws;
  const tell = (m) => { if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(m)); };
  share.send = tell;
  ws.onopen = () => tell({ type: 'join', room: state.room, name: state.name, role: 'share', share_of: state.myId, share_key: state.shareKey });
  ws.onmessage = (ev) => onShareMessage(share, ev.data).catch((e) => log('share message', e));
  ws.onclose = () => { if (state.share === share) stopShare(); };
  renderShareButton();
}

async function onShareMessage(share, data) {
  let msg;
  try { msg = JSON.parse(data); } catch (e) { return; }
  if (state.share !== share) return;
  switch (msg.type) {
    case 'offer': {
      const pc = new RTCPeerConnection({ iceServers: state.iceServers, iceTransportPolicy: relayOnly ? 'relay' : 'all' });
      share.pc = pc;
      pc.onicecandidate = (e) => {
        if (e.candidate && e.candidate.candidate) share.send({ type: 'ice', candidate: e.candidate.candidate, sdpMLineIndex: e.candidate.sdpMLineIndex });
      };
      await pc.setRemoteDescription({ type: 'offer', sdp: msg.sdp });
      for (const t of pc.getTransceivers()) {
        if (t.receiver.track.kind === 'video') {
          preferCodec(t);
          await t.sender.replaceTrack(share.track);
          t.direction = 'sendonly';
        } else {
          t.direction = 'inactive';
        }
      }
      await pc.setLocalDescription(await pc.createAnswer());
      share.send({ type: 'answer', sdp: pc.localDescription.sdp });
      await sendPreferredCodec(pc);
      if (share.sendSize) await fitSender(pc, share.sendSize);
      break;
    }
    case 'ice':
      if (share.pc) await share.pc.addIceCandidate({ candidate: msg.candidate, sdpMLineIndex: msg.sdpMLineIndex }).catch((e) => log('share ice', e));
      break;
    case 'send_size':
      share.sendSize = msg;
      if (share.pc) await fitSender(share.pc, msg);
      break;
    case 'error':
      showError(`${ERROR_TEXT[msg.code] || 'Screen sharing failed'}: ${msg.message} (${msg.code})`);
      stopShare();
      break;
    default: break;
  }
}

function stopShare() {
  const share = state.share;
  if (!share) return;
  state.share = null;
  if (share.send) share.send({ type: 'leave' });
  if (share.pc) share.pc.close();
  if (share.ws) { share.ws.onclose = null; share.ws.onmessage = null; share.ws.close(); }
  share.stream.getTracks().forEach((t) => t.stop());
  renderShareButton();
}

function renderShareButton() {
  const b = $('present-btn');
  if (!b) return;
  setPressed(b, !!state.share, state.share ? 'Stop sharing' : 'Share screen');
}

// ---------- room UI ----------

function showRoom() {
  $('join-screen').hidden = true;
  $('room-screen').hidden = false;
  // A viewer sends nothing: no microphone, camera or self view buttons.
  document.querySelectorAll('#room-screen .sender').forEach((b) => { b.hidden = state.viewer; });
  // Phones have no screen capture: no share button there.
  if (!(navigator.mediaDevices && navigator.mediaDevices.getDisplayMedia)) $('present-btn').hidden = true;
  showError('');
}

function renderLayout() {
  const l = state.layout;
  if (!l) return;
  // The stage has exactly the canvas's shape, so tile percentages line up.
  $('stage').style.aspectRatio = `${l.canvas.width} / ${l.canvas.height}`;
  $('stage').style.width = `min(100%, calc(72vh * ${l.canvas.width} / ${l.canvas.height}))`;
  $('people').replaceChildren(...l.tiles.map((t) => {
    const li = document.createElement('li');
    li.dataset.id = t.id;
    const name = document.createElement('span');
    name.textContent = t.id === state.myId ? `${t.name} (you)` : t.name;
    const st = document.createElement('span');
    st.className = 'state';
    const flags = [t.id === state.speaker ? 'speaking' : '', t.audio_muted ? 'muted' : '', t.video_muted ? 'camera off' : '',
      t.share_of && t.share_of === state.myId ? 'your share' : ''].filter(Boolean);
    st.textContent = flags.length ? ` — ${flags.join(', ')}` : '';
    li.append(name, st);
    return li;
  }));
  placeSelfView();
}

function placeSelfView() {
  const v = $('self');
  const l = state.layout;
  const me = l && l.tiles.find((t) => t.id === state.myId);
  const hasCam = state.local && state.local.getVideoTracks().length;
  if (!me || !hasCam || !state.selfView || state.camOff) { v.hidden = true; return; }
  if (v.srcObject !== state.local) v.srcObject = state.local;
  // Drawn as the mix draws this tile: filled (cropped) unless letterboxed.
  v.style.objectFit = state.sendSize && state.sendSize.fit === 'letterbox' ? 'contain' : 'cover';
  Object.assign(v.style, {
    left: `${(100 * me.x) / l.canvas.width}%`, top: `${(100 * me.y) / l.canvas.height}%`,
    width: `${(100 * me.width) / l.canvas.width}%`, height: `${(100 * me.height) / l.canvas.height}%`,
  });
  v.hidden = false;
}

function setPressed(btn, pressed, label) {
  btn.setAttribute('aria-pressed', String(pressed));
  btn.querySelector('.label').textContent = label;
}

function toggleMic() {
  state.micMuted = !state.micMuted;
  if (state.local) state.local.getAudioTracks().forEach((t) => { t.enabled = !state.micMuted; });
  setPressed($('mic-btn'), state.micMuted, state.micMuted ? 'Unmute' : 'Mute');
  send({ type: 'mute', audio: state.micMuted });
}

function toggleCam() {
  state.camOff = !state.camOff;
  if (state.local) state.local.getVideoTracks().forEach((t) => { t.enabled = !state.camOff; });
  setPressed($('cam-btn'), state.camOff, state.camOff ? 'Camera on' : 'Camera off');
  send({ type: 'mute', video: state.camOff });
  placeSelfView();
}

function toggleSelf() {
  state.selfView = !state.selfView;
  setPressed($('self-btn'), state.selfView, state.selfView ? 'Hide self view' : 'Show self view');
  placeSelfView();
}

function toggleStats() {
  const open = $('stats').hidden;
  $('stats').hidden = !open;
  setPressed($('stats-btn'), open, open ? 'Hide stats' : 'Show stats');
}

// ---------- devices during the call ----------

/** The device a local track comes from. */
function deviceOf(track) { return (track && track.getSettings && track.getSettings().deviceId) || ''; }

/** Use another camera or microphone in the call: open it, hand the new
 * track to the same sender (replaceTrack: no renegotiation, no rejoin),
 * and let go of the old one. */
async function switchDevice(kind, deviceId, why = '') {
  const sender = state.pc && state.pc.getSenders().find((s) => s.track && s.track.kind === kind);
  const old = state.local && state.local.getTracks().find((t) => t.kind === kind);
  if (!sender || !old) {
    $('device-note').textContent = `You joined without a ${kind === 'video' ? 'camera' : 'microphone'}; leave and join again to use one.`;
    return false;
  }
  const constraints = kind === 'video'
    ? { video: { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 30 }, ...(deviceId ? { deviceId: { exact: deviceId } } : {}) } }
    : { audio: { echoCancellation: true, noiseSuppression: true, ...(deviceId ? { deviceId: { exact: deviceId } } : {}) } };
  let track;
  try {
    [track] = (await navigator.mediaDevices.getUserMedia(constraints)).getTracks();
  } catch (e) {
    $('device-note').textContent = `Could not open that ${kind === 'video' ? 'camera' : 'microphone'} (${e.name}).`;
    return false;
  }
  track.enabled = kind === 'audio' ? !state.micMuted : !state.camOff;
  watchTrack(track);
  await sender.replaceTrack(track);
  state.local.removeTrack(old);
  old.onended = null;
  old.stop();
  state.local.addTrack(track);
  if (kind === 'video') { $('self').srcObject = null; placeSelfView(); await applySendSize(); }
  $('device-note').textContent = why;
  await listDevices();
  const sel = kind === 'video' ? $('room-camera-select') : $('room-mic-select');
  sel.value = deviceOf(track) || sel.value;
  log('switched', kind, deviceOf(track));
  return true;
}

/** A device that goes away mid-call (unplugged, taken by another app):
 * fall back to another one of its kind, or say so and show the name card. */
function watchTrack(track) {
  track.onended = async () => {
    if (!state.pc || !state.local || !state.local.getTracks().includes(track)) return;
    const what = track.kind === 'video' ? 'camera' : 'microphone';
    const lost = deviceOf(track);
    let others = [];
    try { others = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === `${track.kind}input` && d.deviceId && d.deviceId !== lost); } catch (e) { /* none */ }
    for (const d of others) {
      if (await switchDevice(track.kind, d.deviceId, `Your ${what} stopped; now using ${d.label || `another ${what}`}.`)) return;
    }
    $('device-note').textContent = `Your ${what} stopped and no other is available.`;
    showError(`Your ${what} was disconnected${track.kind === 'video' ? ': the others see your name card' : ': the others cannot hear you'}. Plug it back in and choose it under Devices.`);
    if (track.kind === 'video' && !state.camOff) toggleCam();
    else if (track.kind === 'audio' && !state.micMuted) toggleMic();
  };
}

// ---------- chat ----------

/** Add messages (live or history) to the log, each once; text only, never
 * markup. Others' messages count as unread while the panel is closed or
 * the page hidden. */
function addChat(messages) {
  const log = $('chat-log');
  for (const m of messages) {
    if (!m || typeof m.text !== 'string') continue;
    const key = `${m.at_ms}|${m.id}|${m.seq}`;
    if (state.chatKeys.has(key)) continue;
    state.chatKeys.add(key);
    state.chat.push({ id: m.id, name: m.name, text: m.text, at_ms: m.at_ms, seq: m.seq });
    const li = document.createElement('li');
    const who = document.createElement('span');
    who.className = 'who';
    who.textContent = m.id === state.myId ? `${m.name} (you)` : m.name;
    const time = document.createElement('time');
    const at = new Date(m.at_ms);
    time.dateTime = at.toISOString();
    time.textContent = at.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    const text = document.createElement('p');
    text.className = 'text';
    text.textContent = m.text;
    li.append(who, time, text);
    log.append(li);
    if (m.id !== state.myId && (!state.chatOpen || document.hidden)) state.unread += 1;
  }
  log.scrollTop = log.scrollHeight;
  renderChatButton();
}

function clearChat() {
  state.chat = []; state.chatKeys = new Set(); state.unread = 0;
  $('chat-log').replaceChildren();
  renderChatButton();
}

function renderChatButton() {
  $('chat').hidden = !state.chatOpen;
  setPressed($('chat-btn'), state.chatOpen, 'Chat');
  const badge = $('chat-unread');
  badge.textContent = state.unread > 99 ? '99+' : String(state.unread);
  badge.hidden = state.unread === 0;
  badge.setAttribute('aria-label', `${state.unread} unread`);
}

function toggleChat() {
  state.chatOpen = !state.chatOpen;
  if (state.chatOpen) { state.unread = 0; $('chat-input').focus(); }
  renderChatButton();
}

function sendChat(e) {
  e.preventDefault();
  const input = $('chat-input');
  const text = input.value.trim();
  if (!text || !state.myId) return;
  send({ type: 'chat', text });
  input.value = '';
}

// ---------- stats ----------

function startStats() {
  clearInterval(state.statsTimer);
  state.lastSample = null;
  state.statsTimer = setInterval(sampleStats, 1000);
}

async function sampleStats() {
  const pc = state.pc;
  if (!pc) return;
  const report = await pc.getStats();
  const now = performance.now();
  const cur = { t: now, sentVideo: 0, sentAudio: 0, recvVideo: 0, recvAudio: 0, lost: 0, received: 0, frames: 0 };
  let fps = 0; let rtt = null; let width = 0; let height = 0;
  report.forEach((r) => {
    if (r.type === 'outbound-rtp') { if (r.kind === 'video') cur.sentVideo += r.bytesSent; else cur.sentAudio += r.bytesSent; }
    if (r.type === 'inbound-rtp') {
      if (r.kind === 'video') { cur.recvVideo += r.bytesReceived; fps = r.framesPerSecond || 0; cur.frames = r.framesDecoded || 0; width = r.frameWidth || 0; height = r.frameHeight || 0; } else cur.recvAudio += r.bytesReceived;
      cur.lost += r.packetsLost || 0; cur.received += r.packetsReceived || 0;
    }
    if (r.type === 'candidate-pair' && r.nominated && r.currentRoundTripTime !== undefined) rtt = r.currentRoundTripTime * 1000;
  });
  const prev = state.lastSample;
  state.lastSample = cur;
  if (!prev) return;
  const dt = (cur.t - prev.t) / 1000;
  const kbps = (a, b) => Math.max(0, ((a - b) * 8) / 1000 / dt);
  const dLost = cur.lost - prev.lost; const dRecv = cur.received - prev.received;
  state.stats = {
    sendVideoKbps: kbps(cur.sentVideo, prev.sentVideo), sendAudioKbps: kbps(cur.sentAudio, prev.sentAudio),
    recvVideoKbps: kbps(cur.recvVideo, prev.recvVideo), recvAudioKbps: kbps(cur.recvAudio, prev.recvAudio),
    fps, decodedFps: (cur.frames - prev.frames) / dt, width, height, rttMs: rtt,
    lossPct: dLost + dRecv > 0 ? (100 * Math.max(0, dLost)) / (dLost + dRecv) : 0,
  };
  const s = state.stats;
  const rows = [
    ['Sending', `${(s.sendVideoKbps + s.sendAudioKbps).toFixed(0)} kbps`],
    ['Receiving', `${(s.recvVideoKbps + s.recvAudioKbps).toFixed(0)} kbps`],
    ['Video', `${s.width}×${s.height} at ${s.fps.toFixed(0)} fps`],
    ['Round trip', rtt === null ? '—' : `${rtt.toFixed(0)} ms`],
    ['Packet loss', `${s.lossPct.toFixed(1)} %`],
    ['Quality', qualityText(state.quality)],
  ];
  $('stats-list').replaceChildren(...rows.flatMap(([k, v]) => {
    const dt2 = document.createElement('dt'); dt2.textContent = k;
    const dd = document.createElement('dd'); dd.textContent = v;
    return [dt2, dd];
  }));
}

/** The server's `quality` event in words. */
function qualityText(q) {
  if (!q) return '—';
  if (q.rung === 'audio') return 'audio only (weak link)';
  const est = q.estimate_kbps ? `, link ≈ ${q.estimate_kbps} kbps` : '';
  const codec = q.codec ? `${q.codec === 'h264' ? 'H.264' : q.codec.toUpperCase()} ` : '';
  return `${codec}${q.rung}, ${q.width}×${q.height} at ${q.fps} fps, ${q.kbps} kbps${q.auto ? ' (automatic' + est + ')' : ' (chosen)'}`;
}

// ---------- join / leave ----------

async function join(viewer = false) {
  const room = $('room').value.trim();
  const name = $('name').value.trim();
  if (!room || !name) { $('join-form').reportValidity(); return; }
  localStorage.setItem('tessera.name', name);
  history.replaceState(null, '', `?room=${encodeURIComponent(room)}${roomToken ? `&token=${encodeURIComponent(roomToken)}` : ''}${viewer && watchLink ? '&watch=1' : ''}${debug ? '&debug' : ''}`);
  Object.assign(state, { room, name, viewer, leaving: false, attempt: 0 });
  clearChat();
  showError('');
  // A viewer never opens (and lets go of) camera and microphone.
  if (viewer) stopLocal();
  else if (!state.local) await startPreview();
  status('Connecting…');
  connect();
}

function leave() {
  state.leaving = true;
  clearTimeout(state.reconnectTimer);
  send({ type: 'leave' });
  teardownConnection();
  $('mix').srcObject = null;
  $('self').hidden = true;
  state.layout = null;
  $('room-screen').hidden = true;
  $('join-screen').hidden = false;
  status('Not connected');
}

const claims = roomToken && tokenClaims(roomToken);
$('room').value = (claims && claims.grant && claims.grant.room !== '*' && claims.grant.room) || params.get('room') || 'lobby';
$('name').value = (claims && claims.name) || localStorage.getItem('tessera.name') || '';
$('join-form').addEventListener('submit', (e) => { e.preventDefault(); join(watchLink); });
$('watch-btn').addEventListener('click', () => join(true));
$('share-btn').addEventListener('click', async () => {
  const url = `${location.origin}${location.pathname}?room=${encodeURIComponent($('room').value.trim())}`;
  try { await navigator.clipboard.writeText(url); $('share-note').textContent = `Copied: ${url}`; } catch (e) { $('share-note').textContent = url; }
});
$('camera-select').addEventListener('change', startPreview);
$('mic-select').addEventListener('change', startPreview);
$('mic-btn').addEventListener('click', toggleMic);
$('room-camera-select').addEventListener('change', (e) => { if (e.target.value !== 'none') switchDevice('video', e.target.value); });
$('room-mic-select').addEventListener('change', (e) => { if (e.target.value !== 'none') switchDevice('audio', e.target.value); });
if (navigator.mediaDevices) navigator.mediaDevices.addEventListener('devicechange', () => listDevices());
// ?quality=high|medium|low|auto: the rung to ask for at join (a lobby
// screen on a good link, a phone that should save data).
if ([...$('quality-select').options].some((o) => o.value === params.get('quality'))) $('quality-select').value = params.get('quality');
$('quality-select').addEventListener('change', (e) => send({ type: 'set_quality', quality: e.target.value }));
$('cam-btn').addEventListener('click', toggleCam);
$('present-btn').addEventListener('click', toggleShare);
$('self-btn').addEventListener('click', toggleSelf);
$('stats-btn').addEventListener('click', toggleStats);
$('leave-btn').addEventListener('click', leave);
$('chat-btn').addEventListener('click', toggleChat);
$('chat-form').addEventListener('submit', sendChat);
document.addEventListener('visibilitychange', () => { if (!document.hidden && state.chatOpen) { state.unread = 0; renderChatButton(); } });
window.addEventListener('resize', placeSelfView);
renderChatButton();

/** Preview the camera at once only where that asks nobody: permission
 * already given (or an insecure page, which only explains). Otherwise the
 * browser asks when the person joins, and never if they watch only. */
async function firstPreview() {
  if (watchLink) {
    document.querySelectorAll('.sender-only').forEach((e) => { e.hidden = true; });
    $('join-btn').textContent = 'Watch';
    $('watch-btn').hidden = true;
    $('preview-note').textContent = 'Watch-only link: you will see and hear the room; no camera or microphone is used.';
    return;
  }
  if (!window.isSecureContext || !navigator.mediaDevices) { await startPreview(); return; }
  const granted = async (name) => {
    try { return (await navigator.permissions.query({ name })).state === 'granted'; } catch (e) { return false; }
  };
  if (await granted('camera') && await granted('microphone')) { await startPreview(); return; }
  $('preview-note').textContent = 'Your browser asks for camera and microphone when you join. Choose "Watch only" to join without them.';
  await listDevices();
}
firstPreview();

// For tests and the curious: read-only view of the client state.
window.tessera = {
  get pc() { return state.pc; }, get id() { return state.myId; }, get layout() { return state.layout; },
  get stats() { return state.stats; }, get connected() { return !!state.pc && state.pc.connectionState === 'connected'; },
  get sendSize() { return state.sendSize; }, get quality() { return state.quality; }, get viewer() { return state.viewer; },
  get chat() { return state.chat.slice(); }, get unread() { return state.unread; },
  get sharing() { return !!state.share && !!state.share.pc && state.share.pc.connectionState === 'connected'; },
  get shareSendSize() { return state.share ? state.share.sendSize : null; },
};
