// firetower chat demo: plain browser JavaScript speaking the JSON protocol
// (firetower.v1.json) directly over a WebSocket.
(function () {
  'use strict';

  var DEFAULT_ROOM = '/chat/world';
  var MAX_BACKOFF_MS = 15000;
  var MAX_MESSAGES = 500;

  var $ = function (id) { return document.getElementById(id); };
  var ui = {
    name: $('name'), room: $('room'), roomForm: $('room-form'),
    currentRoom: $('current-room'), messages: $('messages'),
    compose: $('compose'), text: $('text'), send: $('send'),
    online: $('online'), status: $('status')
  };

  var defaultName = 'guest-' + (1000 + Math.floor(Math.random() * 9000));
  ui.name.value = defaultName;

  var ws = null;          // the current socket, null while disconnected
  var room = DEFAULT_ROOM; // the room the user is in (or trying to join)
  var joined = null;      // the topic whose subscribe the server acked on ws
  var nextID = 1;
  var pending = new Map(); // request id -> {ok, fail}
  var attempt = 0;        // reconnect attempts since the last successful join
  var retryTimer = null;
  var lost = false;        // the socket dropped; say so when back in
  var onlineSeq = 0;      // bumped on every presence delivery

  // ---- helpers -----------------------------------------------------------

  function currentName() {
    var n = ui.name.value.trim();
    return n || defaultName;
  }

  // A bare word is a room under /chat/; anything starting with "/" is a topic.
  function normalizeRoom(v) {
    v = v.trim();
    if (v && v.charAt(0) !== '/') v = '/chat/' + v;
    return v;
  }

  // The protocol's topic rule: 1..256 bytes of printable UTF-8, no ',' and no
  // whitespace. Checked here so the user gets a clear message at once.
  function topicProblem(t) {
    var n = new TextEncoder().encode(t).length;
    if (n < 1 || n > 256) return 'a room name must be 1 to 256 bytes long';
    if (/[\s,\p{C}]/u.test(t)) return 'a room name cannot contain spaces, commas or control characters';
    return '';
  }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function clock() {
    var d = new Date();
    var p = function (x) { return (x < 10 ? '0' : '') + x; };
    return p(d.getHours()) + ':' + p(d.getMinutes());
  }

  function append(li) {
    var list = ui.messages;
    var atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 40;
    list.appendChild(li);
    while (list.children.length > MAX_MESSAGES) list.removeChild(list.firstElementChild);
    if (atBottom) list.scrollTop = list.scrollHeight;
  }

  function addChat(name, text) {
    var li = el('li', 'msg' + (name === currentName() ? ' mine' : ''));
    li.appendChild(el('span', 'who', name));
    li.appendChild(el('span', 'text', text));
    li.appendChild(el('time', 'at', clock()));
    append(li);
  }

  // A line from the page itself (notices and errors), never class "msg".
  function notice(text, isError) {
    append(el('li', 'sys' + (isError ? ' error' : ''), text));
  }

  function setOnline(n) { ui.online.textContent = String(n); }

  function setStatus(connected) {
    var s = connected ? 'connected' : 'disconnected';
    ui.status.textContent = s;
    ui.status.dataset.state = s;
  }

  function updateSend() {
    ui.send.disabled = !(ws && joined !== null && joined === room);
  }

  // ---- protocol ----------------------------------------------------------

  // Sends a request with an id; ok(frame) runs on its ack, fail(frame) on its
  // error. Returns false when there is no open socket.
  function request(msg, ok, fail) {
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    var id = 'r' + nextID++;
    msg.id = id;
    pending.set(id, { ok: ok, fail: fail });
    ws.send(JSON.stringify(msg));
    return true;
  }

  function join(topic, announce) {
    joined = null;
    updateSend();
    request({ type: 'subscribe', topics: [topic] }, function () {
      if (topic !== room) return; // the user moved on meanwhile
      joined = topic;
      attempt = 0;
      updateSend();
      if (lost) notice('reconnected to ' + topic);
      else if (announce) notice('you joined ' + topic);
      lost = false;
      fetchCount(topic);
    }, function (e) {
      if (topic === room) notice('could not join ' + topic + ': ' + describe(e), true);
    });
  }

  // Fills the count in at once; a presence delivery that arrives meanwhile is
  // newer and wins.
  function fetchCount(topic) {
    var seq = onlineSeq;
    fetch('/api/v1/topics/' + encodeURIComponent(topic), { cache: 'no-store' })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (j) {
        if (j && topic === room && seq === onlineSeq && typeof j.count === 'number') setOnline(j.count);
      })
      .catch(function () {});
  }

  function describe(e) {
    return (e.code || 'error') + (e.message ? ' (' + e.message + ')' : '');
  }

  function onDelivery(topic, data) {
    if (topic !== room) return; // a late delivery for a room we left
    if (data && typeof data === 'object' && !Array.isArray(data)) {
      if (data.kind === 'online') {
        var n = Number(data.count);
        if (Number.isFinite(n)) { onlineSeq++; setOnline(n); }
        return;
      }
      if (data.kind === 'chat') {
        addChat(String(data.name == null ? '?' : data.name), String(data.text == null ? '' : data.text));
        return;
      }
    }
    notice('data: ' + JSON.stringify(data));
  }

  function onFrame(raw) {
    var m;
    try { m = JSON.parse(raw); } catch (e) { notice('unreadable frame from the server', true); return; }
    if (!m || typeof m !== 'object') return;
    var p = m.id !== undefined ? pending.get(m.id) : undefined;
    switch (m.type) {
      case 'publish':
        onDelivery(m.topic, m.data);
        break;
      case 'ack':
        if (p) { pending.delete(m.id); if (p.ok) p.ok(m); }
        break;
      case 'error':
        if (p) pending.delete(m.id);
        if (p && p.fail) p.fail(m);
        else notice('server error: ' + describe(m), true);
        break;
      case 'pong':
        break;
      case undefined:
        // legacy delivery (raw data, no envelope): it can only be for our room
        onDelivery(room, m);
        break;
      default:
        notice('unexpected frame: ' + String(m.type), true);
    }
  }

  // ---- connection --------------------------------------------------------

  function loadConfig() {
    return fetch('/config.json', { cache: 'no-store' }).then(function (r) {
      if (!r.ok) throw new Error('/config.json: HTTP ' + r.status);
      return r.json();
    }).then(function (c) {
      var scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
      var port = c.ws_port || location.port;
      return scheme + location.hostname + (port ? ':' + port : '') + (c.ws_path || '/ws');
    });
  }

  function connect() {
    retryTimer = null;
    loadConfig().then(function (url) {
      var sock = new WebSocket(url);
      ws = sock;
      sock.onopen = function () {
        if (ws !== sock) return;
        setStatus(true);
        join(room);
      };
      sock.onmessage = function (ev) {
        if (ws === sock && typeof ev.data === 'string') onFrame(ev.data);
      };
      sock.onclose = function (ev) {
        if (ws !== sock) return;
        ws = null;
        joined = null;
        pending.clear();
        lost = true;
        ui.online.textContent = '';
        setStatus(false);
        updateSend();
        retry('connection closed (' + ev.code + (ev.reason ? ' ' + ev.reason : '') + ')');
      };
    }).catch(function (e) {
      ws = null;
      retry(e.message || String(e));
    });
  }

  // Exponential backoff with jitter: 0.5s, 1s, 2s ... capped at 15s.
  function retry(reason) {
    if (retryTimer) return;
    var base = Math.min(MAX_BACKOFF_MS, 500 * Math.pow(2, attempt));
    var delay = Math.round(base * (0.5 + Math.random() / 2));
    if (attempt === 0) notice(reason + '; reconnecting…', true);
    attempt++;
    retryTimer = setTimeout(connect, delay);
  }

  // ---- user actions ------------------------------------------------------

  ui.roomForm.addEventListener('submit', function (ev) {
    ev.preventDefault();
    var next = normalizeRoom(ui.room.value);
    var problem = topicProblem(next);
    if (problem) { notice(problem, true); return; }
    ui.room.value = next;
    if (next === room && joined === room) return;
    var old = room;
    room = next;
    ui.currentRoom.textContent = next;
    ui.messages.textContent = '';
    ui.online.textContent = '';
    if (old !== next) {
      request({ type: 'unsubscribe', topics: [old] }, null, function (e) {
        notice('could not leave ' + old + ': ' + describe(e), true);
      });
    }
    join(next, true);
  });

  ui.compose.addEventListener('submit', function (ev) {
    ev.preventDefault();
    var text = ui.text.value.trim();
    if (!text || ui.send.disabled) return;
    var sent = request({ type: 'publish', topic: room, data: { kind: 'chat', name: currentName(), text: text } },
      null, function (e) { notice('message not sent: ' + describe(e), true); });
    if (sent) ui.text.value = '';
    ui.text.focus();
  });

  ui.currentRoom.textContent = room;
  setStatus(false);
  connect();
})();
