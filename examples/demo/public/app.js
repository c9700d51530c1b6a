// The demo page: rooms you join, messages pushed to the room's group, history by GET, posting
// by POST, who is online, and the connection state in view. Everything goes through one
// Switchboard client (client/index.js, served by the demo at /client/).
import { SwitchboardClient } from '/client/index.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

// What the page shows, and what the browser tests read (window.demo).
const view = {
  name: null,
  room: params.get('room') || 'lobby',
  stream: null,      // the room's stream, "g:room:<id>"
  position: null,    // { offset, epoch } of the room stream the list is at
  messages: [],      // { from, text, at, offset }
  online: [],
  status: 'connecting',
  reloads: 0,        // how often the room's history was loaded
  lastResumed: null, // the last 'resumed' event
};
window.demo = view;

let client = null;
let countdown = null;

function setStatus(kind, text) {
  clearInterval(countdown);
  view.status = kind;
  const el = $('status');
  el.className = `status ${kind}`;
  el.textContent = text;
}

function note(text) { $('note').textContent = text; }

// ---- rendering ----------------------------------------------------------------------------

function renderMessages() {
  const ol = $('messages');
  ol.replaceChildren(...view.messages.map((m) => {
    const li = document.createElement('li');
    li.dataset.offset = m.offset;
    const from = document.createElement('span');
    from.className = 'from';
    from.textContent = m.from;
    const at = document.createElement('span');
    at.className = 'at';
    at.textContent = new Date(m.at).toLocaleTimeString();
    li.append(from, document.createTextNode(m.text), at);
    return li;
  }));
  ol.scrollTop = ol.scrollHeight;
  $('room-title').textContent = `#${view.room}`;
}

function renderOnline() {
  $('online').replaceChildren(...view.online.map((n) => {
    const li = document.createElement('li');
    li.textContent = n === view.name ? `${n} (you)` : n;
    return li;
  }));
}

async function renderRooms() {
  const r = await client.get('/api/rooms');
  if (r.status !== 200) return;
  const ids = new Set(r.body.map((x) => x.id));
  ids.add(view.room);
  $('rooms').replaceChildren(...[...ids].sort().map((id) => {
    const li = document.createElement('li');
    li.textContent = `#${id}`;
    li.className = id === view.room ? 'current' : '';
    li.onclick = () => switchRoom(id);
    return li;
  }));
}

// ---- state from the server ----------------------------------------------------------------

// The room's history with its stream position: pushes at or below it are already in the list.
async function loadRoom() {
  const r = await client.get(`/api/rooms/${view.room}/messages`);
  if (r.status !== 200) { note(`history: ${r.status}`); return; }
  view.stream = r.body.stream;
  view.position = { offset: r.body.offset, epoch: r.body.epoch };
  let offset = r.body.offset - r.body.messages.length;
  view.messages = r.body.messages.map((m) => ({ ...m, offset: ++offset }));
  view.reloads++;
  renderMessages();
}

async function loadOnline() {
  const r = await client.get('/api/online');
  if (r.status === 200) { view.online = r.body; renderOnline(); }
}

// Joining creates the room if it does not exist yet (reading never does); the server may
// refuse (too many rooms), and says why.
async function joinRoom() {
  const r = await client.put(`/api/rooms/${view.room}/members/me`);
  if (r.status !== 204) note(`join: ${r.status} ${r.body?.message ?? r.body?.error ?? ''}`);
  return r.status === 204;
}

async function switchRoom(id) {
  if (id === view.room) return;
  const old = view.room;
  await client.delete(`/api/rooms/${old}/members/me`);
  // Out of the room, its pushes stop; on coming back they resume at a later offset, which
  // must not count as a gap.
  client.forget(`g:room:${old}`);
  view.room = id;
  view.messages = [];
  renderMessages();
  if (await joinRoom()) await loadRoom();
  await renderRooms();
}

// A message pushed to the room: appended once, in order. The client already drops duplicates
// and resumes on gaps within the stream; this check only relates pushes to the history that
// a GET returned (which may already hold them).
function onMessage(push) {
  if (push.params.roomId !== view.room) return;
  const p = view.position;
  if (p && push.epoch === p.epoch && push.offset <= p.offset) return;
  view.position = { offset: push.offset, epoch: push.epoch };
  view.messages.push({ ...push.body, offset: push.offset });
  renderMessages();
}

// ---- the connection -----------------------------------------------------------------------

function start(name) {
  view.name = name;
  $('login').hidden = true;
  $('app').hidden = false;
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  client = new SwitchboardClient({
    url: `${scheme}://${location.host}/ws?name=${encodeURIComponent(name)}`,
    reconnect: { initialDelay: 500, factor: 2, maxDelay: 5000 },
    heartbeatInterval: 5000,
    persist: true, // positions survive a reload of the page (sessionStorage)
  });
  window.demoClient = client;

  client.addServerResponseListenerFor.post('/api/rooms/:roomId/messages', onMessage);
  client.on('/api/online', (push) => { view.online = push.body; renderOnline(); });

  // Every open that is not a resume is a new session, in no group: the first one, or the one
  // that follows a resume the server refused because it no longer had the session (it
  // restarted). Join the room before loading its history, so that no push falls between.
  client.on('open', async (e) => {
    if (e.resumed) return; // 'resumed' said what happened
    if (view.lastResumed?.sessionLost) setStatus('resumed', 'reconnected — history reloaded');
    else setStatus('connected', 'connected');
    const joined = await joinRoom();
    await Promise.all([joined ? loadRoom() : null, loadOnline(), renderRooms()]);
  });
  client.on('resumed', async (e) => {
    view.lastResumed = e;
    if (e.sessionLost) {
      // 'open' follows at once, for the new session: it joins and reloads.
      note(`the server lost this session (${e.reason || 'restart'}): state reloaded`);
      return;
    }
    const s = view.stream && e.streams[view.stream];
    if (s && !s.recovered) {
      setStatus('resumed', 'resumed — history reloaded');
      note('some messages could not be replayed: history reloaded');
      await loadRoom();
    } else {
      setStatus('resumed', 'resumed — nothing lost');
      note('');
    }
    await loadOnline(); // presence pushes are not recorded
  });
  client.on('reconnecting', ({ attempt, delay }) => {
    let left = Math.ceil(delay / 1000);
    setStatus('reconnecting', `reconnecting in ${left} s (attempt ${attempt})`);
    countdown = setInterval(() => {
      left = Math.max(0, left - 1);
      $('status').textContent = `reconnecting in ${left} s (attempt ${attempt})`;
    }, 1000);
  });
  client.on('close', (e) => {
    if (!e.willReconnect) setStatus('closed', 'disconnected');
    // The client makes no attempt while the browser says it is offline (until 'online').
    else if (navigator.onLine === false) setStatus('offline', 'offline — waiting for the network');
    else if (view.status !== 'reconnecting') setStatus('offline', 'connection lost');
  });
  client.on('error', (e) => console.warn('switchboard:', e.message));

  $('post').onsubmit = async (ev) => {
    ev.preventDefault();
    const text = $('text').value.trim();
    if (!text) return;
    $('text').value = '';
    try {
      const r = await client.post(`/api/rooms/${view.room}/messages`, text);
      if (r.status !== 201) note(`post: ${r.status} ${JSON.stringify(r.body)}`);
    } catch (e) {
      note(`post failed: ${e.message}`);
    }
  };
  $('new-room').onsubmit = (ev) => {
    ev.preventDefault();
    const id = $('room-name').value.trim();
    $('room-name').value = '';
    if (id) switchRoom(id);
  };
}

const name = params.get('name') || sessionStorage.getItem('sb-demo-name');
if (name) {
  sessionStorage.setItem('sb-demo-name', name);
  start(name);
} else {
  setStatus('closed', 'not connected');
  $('login').hidden = false;
  $('login').onsubmit = (ev) => {
    ev.preventDefault();
    const n = $('name').value.trim();
    sessionStorage.setItem('sb-demo-name', n);
    start(n);
  };
}
