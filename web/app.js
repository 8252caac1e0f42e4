// A plain client for tessera: join a room, send camera and microphone
// once, receive the server's mixed grid. See docs/protocol.md.
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
$('room').value = params.get('room') || 'lobby';
$('name').value = localStorage.getItem('tessera.name') || '';

let ws = null;
let pc = null;
let local = null;
let pendingIce = [];

function status(text) { $('status').textContent = text; }
function showError(text) { const e = $('error'); e.textContent = text; e.hidden = !text; }
function send(msg) { if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg)); }

async function getMedia() {
  for (const c of [{ audio: true, video: { width: 640, height: 360 } }, { audio: true }, null]) {
    if (!c) return null;
    try { return await navigator.mediaDevices.getUserMedia(c); } catch (e) { /* try the next */ }
  }
  return null;
}

async function onOffer(sdp) {
  pc = new RTCPeerConnection({ iceServers: [] });
  pc.onicecandidate = (e) => {
    if (e.candidate && e.candidate.candidate) {
      send({ type: 'ice', candidate: e.candidate.candidate, sdpMLineIndex: e.candidate.sdpMLineIndex });
    }
  };
  pc.ontrack = (e) => {
    const v = $('mix');
    if (!v.srcObject) v.srcObject = new MediaStream();
    v.srcObject.addTrack(e.track);
  };
  pc.onconnectionstatechange = () => status(`Connection: ${pc.connectionState}`);
  await pc.setRemoteDescription({ type: 'offer', sdp });
  // The server offers sendrecv audio and video; put our tracks on them.
  for (const t of pc.getTransceivers()) {
    const kind = t.receiver.track.kind;
    const track = local && local.getTracks().find((x) => x.kind === kind);
    if (track) { await t.sender.replaceTrack(track); t.direction = 'sendrecv'; } else { t.direction = 'recvonly'; }
  }
  const answer = await pc.createAnswer();
  await pc.setLocalDescription(answer);
  send({ type: 'answer', sdp: answer.sdp });
  for (const c of pendingIce) await pc.addIceCandidate(c);
  pendingIce = [];
}

function renderPeople(tiles, myId) {
  const ul = $('people');
  ul.replaceChildren(...tiles.map((t) => {
    const li = document.createElement('li');
    li.textContent = t.id === myId ? `${t.name} (you)` : t.name;
    return li;
  }));
}

let myId = null;
async function join(room, name) {
  showError('');
  localStorage.setItem('tessera.name', name);
  status('Getting camera and microphone…');
  local = await getMedia();
  status('Connecting…');
  ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`);
  ws.onopen = () => send({ type: 'join', room, name });
  ws.onclose = () => { status('Disconnected'); };
  ws.onmessage = async (ev) => {
    const msg = JSON.parse(ev.data);
    if (params.has('debug')) console.log('recv', JSON.stringify(msg).slice(0, 300));
    switch (msg.type) {
      case 'joined': myId = msg.id; $('join').hidden = true; $('call').hidden = false; status(`In room ${msg.room}`); break;
      case 'offer': await onOffer(msg.sdp); break;
      case 'ice': {
        const c = { candidate: msg.candidate, sdpMLineIndex: msg.sdpMLineIndex };
        if (pc && pc.remoteDescription) await pc.addIceCandidate(c); else pendingIce.push(c);
        break;
      }
      case 'layout': renderPeople(msg.tiles, myId); break;
      case 'error': showError(`${msg.message} (${msg.code})`); break;
      default: break;
    }
  };
}

function leave() {
  send({ type: 'leave' });
  if (pc) pc.close();
  if (ws) ws.close();
  if (local) local.getTracks().forEach((t) => t.stop());
  pc = ws = local = null;
  $('mix').srcObject = null;
  $('call').hidden = true; $('join').hidden = false;
  status('Not connected');
}

$('join').addEventListener('submit', (e) => { e.preventDefault(); join($('room').value.trim(), $('name').value.trim()); });
$('leave').addEventListener('click', leave);
window.tessera = { get pc() { return pc; }, get id() { return myId; } };
