// StreamSpace viewer: noVNC (served from /viewer/novnc, copied from npm at build time) connected to
// /api/v1/sessions/{id}/vnc with a one-time viewer ticket. The user's API credential (a same-origin
// cookie, or a bearer token in sessionStorage) is only ever sent in request headers, never in a URL.
import RFB from './novnc/core/rfb.js';

const TOKEN_KEY = 'streamspace.token';
const RECONNECT_MIN_MS = 1000;
const RECONNECT_MAX_MS = 30000;
const STATE_POLL_MS = 3000;
/** WebSocket close code 1008 (policy violation): the server ended this viewer's access; retrying cannot help. */
const CLOSE_ACCESS_ENDED = 1008;

const sessionId = decodeURIComponent(location.pathname.split('/')[2] || '');
const apiBase = `/api/v1/sessions/${encodeURIComponent(sessionId)}`;
const $ = (id) => document.getElementById(id);

let rfb = null;
/**
 * One connection attempt at a time: every connect() and every Disconnect starts a new generation. An attempt goes on
 * after each await only while it is still the current one, and events of an older attempt's RFB are ignored, so a
 * second Reconnect, a Disconnect while the ticket is fetched or a manual Reconnect during an automatic one never
 * leaves a second stream open behind the one the page shows.
 */
let generation = 0;
/**
 * Whether the signed-in person owns this session. Only then is text the session copies also written to the local
 * clipboard: another user's session (an admin viewing it) could otherwise fill the viewer's clipboard with whatever its
 * programs choose, to be pasted later into a terminal. For those it stays in the panel, to be copied by hand. False
 * until known, so nothing is mirrored before the answer.
 */
let ownSession = false;
let userDisconnected = false;
let attempt = 0;
let timer = null;

function authHeaders() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function api(method, path) {
  const response = await fetch(path, {
    method,
    headers: { Accept: 'application/json', ...authHeaders() },
    credentials: 'same-origin',
    cache: 'no-store',
  });
  let body = null;
  try { body = await response.json(); } catch { /* empty or not JSON */ }
  return { status: response.status, body };
}

async function learnOwnership() {
  try {
    const [me, session] = await Promise.all([api('GET', '/api/v1/users/me'), api('GET', apiBase)]);
    ownSession = me.status === 200 && session.status === 200 && me.body.username === session.body.user;
  } catch {
    ownSession = false;
  }
  document.body.dataset.clipboardMirror = String(ownSession);
  $('clipboard-mirror-note').hidden = ownSession;
}

function setStatus(text) { $('status').textContent = text; }

function showMessage(text, { retry = false, wake = false } = {}) {
  $('overlay-message').textContent = text;
  $('overlay-retry').hidden = !retry;
  $('overlay-wake').hidden = !wake;
  $('overlay').hidden = false;
}

function hideMessage() { $('overlay').hidden = true; }

/** Ends the current stream, if any, at once (noVNC removes its screen); its own events no longer count. */
function closeStream() {
  const old = rfb;
  rfb = null;
  if (old) old.disconnect();
}

function schedule(fn, ms) {
  clearTimeout(timer);
  timer = setTimeout(fn, ms);
}

/** Exponential backoff with full jitter, like the agents' reconnect loop. */
function backoffMs() {
  const ceiling = Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * 2 ** attempt);
  attempt += 1;
  return Math.max(RECONNECT_MIN_MS / 2, Math.random() * ceiling);
}

/** Explains a session that cannot be shown; returns true when waiting (polling) makes sense. */
function explainState(session) {
  switch (session.state) {
    case 'pending':
    case 'starting':
      showMessage('The session is starting…');
      return true;
    case 'waking':
      showMessage('The session is waking up…');
      return true;
    case 'hibernating':
    case 'hibernated':
      showMessage('The session is hibernated.', { wake: true });
      return true;
    case 'failed':
      showMessage(`The session failed${session.stateReason ? `: ${session.stateReason}` : '.'}`);
      return false;
    case 'terminating':
    case 'terminated':
      showMessage('The session has ended.');
      return false;
    default:
      showMessage(`The session is ${session.state}.`);
      return true;
  }
}

async function connect() {
  clearTimeout(timer);
  if (!sessionId) { showMessage('No session in this address.'); return; }
  const own = ++generation;
  const current = () => own === generation && !userDisconnected;
  userDisconnected = false;
  closeStream();
  // Reconnect is hidden while this attempt runs; a click that still gets through starts over instead of adding a stream.
  if (!$('overlay').hidden && !$('overlay-retry').hidden) showMessage('Connecting…');
  setStatus('Connecting…');
  $('title').textContent = sessionId;
  document.title = `${sessionId} — StreamSpace`;

  // The ticket request is also the state check: 404 gone, 409 not running (then the session tells why) or its agent offline.
  let ticket;
  try {
    ticket = await api('POST', `${apiBase}/viewer-ticket`);
  } catch {
    if (!current()) return;
    showMessage('The StreamSpace server cannot be reached. Retrying…');
    schedule(connect, backoffMs());
    return;
  }
  if (!current()) return;
  if (ticket.status === 401) { showMessage('You are not signed in (or your sign-in expired).'); setStatus(''); return; }
  if (ticket.status === 404) { showMessage('This session does not exist (any more).'); setStatus(''); return; }
  if (ticket.status === 409) {
    const session = await api('GET', apiBase).catch(() => null);
    if (!current()) return;
    if (session?.status === 200 && session.body.state !== 'running') {
      setStatus(session.body.state);
      if (!explainState(session.body)) return;
      schedule(connect, STATE_POLL_MS);
    } else {
      // Running, but its agent is offline (the answer names it): wait for the agent with backoff.
      setStatus('Waiting');
      showMessage(ticket.body?.message || 'The session is not available.');
      schedule(connect, backoffMs());
    }
    return;
  }
  if (ticket.status !== 200) {
    showMessage(ticket.body?.message || `The server answered ${ticket.status}. Retrying…`);
    schedule(connect, backoffMs());
    return;
  }

  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const url = `${scheme}//${location.host}${ticket.body.url}`;
  // The socket is opened here, not by noVNC, so its close code and reason (why the server ended the stream) can be shown.
  const socket = new WebSocket(url, ['binary']);
  const closed = { code: 0, reason: '' };
  socket.addEventListener('close', (e) => { closed.code = e.code; closed.reason = e.reason; });
  const stream = new RFB($('screen'), socket);
  rfb = stream;
  stream.scaleViewport = true;   // fit the window without scrollbars
  stream.resizeSession = true;   // ask Xvnc (SetDesktopSize) to match the window
  stream.focusOnClick = true;
  // Events of a stream the page no longer shows (ended by Disconnect or replaced by a newer attempt) are ignored.
  const mine = () => rfb === stream;
  stream.addEventListener('connect', () => {
    if (!mine()) return;
    attempt = 0;
    hideMessage();
    setStatus('Connected');
    stream.focus();
  });
  // Set when the VNC server refused the handshake: noVNC reports the disconnect right after, and retrying would only be
  // refused the same way (a new ticket each time), with the reason replaced by "connection lost".
  let refusal = null;
  stream.addEventListener('disconnect', () => { if (mine()) onDisconnect(closed, refusal); });
  stream.addEventListener('clipboard', (e) => {
    if (!mine()) return;
    $('clipboard-text').value = e.detail.text;
    // Mirrored into the local clipboard, for the session's owner only, where the browser allows it (secure contexts);
    // the panel always has it.
    if (ownSession) navigator.clipboard?.writeText(e.detail.text).catch(() => {});
  });
  stream.addEventListener('securityfailure', (e) => {
    if (!mine()) return;
    refusal = `The session refused the connection: ${e.detail.reason || e.detail.status}`;
    showMessage(refusal, { retry: true });
  });
}

/**
 * The stream ended; `closed` is the WebSocket's close code and the server's reason (empty when the connection just broke),
 * `refusal` what the VNC server said when it refused the handshake (then no automatic retry: Retry is offered).
 */
function onDisconnect(closed, refusal) {
  rfb = null;
  setStatus('Disconnected');
  if (closed.code === CLOSE_ACCESS_ENDED) {
    showMessage(closed.reason || 'The server ended your access to this session.', { retry: true });
    return;
  }
  if (refusal) {
    showMessage(refusal, { retry: true });
    return;
  }
  showMessage(`${closed.reason || 'The connection was lost.'} Reconnecting…`, { retry: true });
  // connect() re-reads the session first: a hibernated or ended session gets its message instead of a retry loop.
  schedule(connect, backoffMs());
}

$('disconnect').addEventListener('click', () => {
  // Ends the stream, a scheduled reconnect and an attempt still waiting for its ticket alike.
  userDisconnected = true;
  generation += 1;
  clearTimeout(timer);
  closeStream();
  setStatus('Disconnected');
  showMessage('Disconnected.', { retry: true });
});
$('overlay-retry').addEventListener('click', () => { attempt = 0; connect(); });
$('overlay-wake').addEventListener('click', async () => {
  const r = await api('POST', `${apiBase}/wake`).catch(() => null);
  if (userDisconnected) return;
  if (r && r.status >= 400) showMessage(r.body?.message || `Wake failed (${r.status}).`, { wake: true });
  else { showMessage('The session is waking up…'); schedule(connect, STATE_POLL_MS); }
});
$('fullscreen').addEventListener('click', () => {
  if (document.fullscreenElement) document.exitFullscreen();
  else document.documentElement.requestFullscreen().catch(() => {});
});
$('clipboard-toggle').addEventListener('click', () => {
  const panel = $('clipboard-panel');
  panel.hidden = !panel.hidden;
  $('clipboard-toggle').setAttribute('aria-expanded', String(!panel.hidden));
});
$('clipboard-send').addEventListener('click', () => {
  if (rfb) rfb.clipboardPasteFrom($('clipboard-text').value);
});

if (sessionId) learnOwnership();
connect();
