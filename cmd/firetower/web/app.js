// firetower chat demo: plain browser JavaScript on top of the firetower.js
// client library (loaded before this file). The library owns the WebSocket:
// requests, reconnecting with backoff, and subscribing again to the room after
// a reconnect. This file only drives the page.
(function () {
  'use strict';

  var DEFAULT_ROOM = '/chat/world';
  var MAX_MESSAGES = 500;
  var CONFIG_RETRY_MS = 2000;
  var HISTORY_ON_JOIN = 50; // the latest messages shown on joining a room (when the server keeps history)

  var $ = function (id) { return document.getElementById(id); };
  var ui = {
    name: $('name'), room: $('room'), roomForm: $('room-form'),
    currentRoom: $('current-room'), messages: $('messages'),
    compose: $('compose'), text: $('text'), send: $('send'),
    online: $('online'), status: $('status')
  };

  var defaultName = 'guest-' + (1000 + Math.floor(Math.random() * 9000));
  ui.name.value = defaultName;

  var client = null;       // the Firetower client, once /config.json is read
  var room = DEFAULT_ROOM; // the room the user is in (or trying to join)
  var lastState = 'closed'; // the client's previous state
  var wasOpen = false;     // the client has been open before: 'open' is a reconnect
  var onlineSeq = 0;       // bumped on every presence delivery

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

  function clock(at) {
    var d = typeof at === 'number' && Number.isFinite(at) ? new Date(at) : new Date();
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

  function addChat(name, text, at) {
    var li = el('li', 'msg' + (name === currentName() ? ' mine' : ''));
    li.appendChild(el('span', 'who', name));
    li.appendChild(el('span', 'text', text));
    li.appendChild(el('time', 'at', clock(at)));
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

  // The room is usable once the client is open and subscribed to it.
  function inRoom() {
    return !!client && client.state === 'open' && client.topics.has(room);
  }

  function updateSend() {
    ui.send.disabled = !inRoom();
  }

  // A FiretowerError: its code, and the server's message when there is one.
  function describe(e) {
    var code = (e && e.code) || 'error';
    var msg = e && e.message && e.message !== code ? e.message : '';
    return code + (msg ? ' (' + msg + ')' : '');
  }

  // ---- the room ----------------------------------------------------------

  // join subscribes to topic. The library queues the request until the
  // connection is open, and keeps the topic subscribed across reconnects.
  function join(topic, announce) {
    updateSend();
    // With history on the room, the latest messages follow the ack; after a
    // reconnect firetower.js resumes from the last one shown.
    client.subscribe([topic], { last: HISTORY_ON_JOIN }).then(function () {
      if (topic !== room) {
        // The user moved on while the request waited: leave it again.
        client.unsubscribe([topic]).catch(function () {});
        return;
      }
      updateSend();
      if (announce) notice('you joined ' + topic);
      fetchCount(topic);
    }, function (e) {
      if (topic !== room) return;
      // Dropped before the ack: ask again, it waits for the next open.
      if (e.code === 'connection_lost') { join(topic, announce); return; }
      if (e.code === 'closed') return;
      notice('could not join ' + topic + ': ' + describe(e), true);
      updateSend();
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

  function onDelivery(topic, data, offset) {
    if (topic === null) topic = room; // legacy delivery (no envelope): it can only be for our room
    if (topic !== room) return;       // a late delivery for a room we left
    if (data && typeof data === 'object' && !Array.isArray(data)) {
      if (data.type === 'onSubscribe' || data.type === 'onUnsubscribe') {
        onCount(data.data); // the server's count in legacy mode (v0.4 shape)
        return;
      }
      if (data.kind === 'chat') {
        addChat(String(data.name == null ? '?' : data.name), String(data.text == null ? '' : data.text), data.at);
        return;
      }
    }
    notice('data: ' + JSON.stringify(data));
  }

  // The server's presence events (it tracks presence on /chat/ rooms):
  // a count is the room's online figure across the cluster.
  function onPresence(ev) {
    if (ev.type === 'count' && ev.topic === room) onCount(ev.count);
  }

  function onCount(c) {
    var n = Number(c);
    if (Number.isFinite(n)) { onlineSeq++; setOnline(n); }
  }

  function onState(state) {
    var prev = lastState;
    lastState = state;
    if (state === 'open') {
      setStatus(true);
      // On a reconnect firetower.js has already subscribed to the room again
      // before going open: only the count needs refreshing.
      if (wasOpen && client.topics.has(room)) {
        notice('reconnected to ' + room);
        fetchCount(room);
      }
      wasOpen = true;
    } else {
      setStatus(false);
      ui.online.textContent = '';
      if (state === 'reconnecting' && prev === 'open') notice('connection lost; reconnecting…', true);
    }
    updateSend();
  }

  // ---- connection --------------------------------------------------------

  // The WebSocket address: same host as the page, port and path from
  // /config.json.
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

  var configFailed = false;

  function start() {
    loadConfig().then(function (url) {
      client = new Firetower(url);
      window.chatClient = client; // for the console and the e2e test
      client.on('state', onState);
      client.on('message', onDelivery);
      client.on('presence', onPresence);
      client.on('error', function (e) { notice('server error: ' + describe(e), true); });
      client.on('gap', function (r) {
        if (r.topic === room) notice('the server lost the history of ' + room + ' (it restarted?): messages sent while you were away could not be recovered', true);
      });
      client.connect().catch(function () {});
      join(room);
    }).catch(function (e) {
      if (!configFailed) notice((e.message || String(e)) + '; retrying…', true);
      configFailed = true;
      setTimeout(start, CONFIG_RETRY_MS);
    });
  }

  // ---- user actions ------------------------------------------------------

  ui.roomForm.addEventListener('submit', function (ev) {
    ev.preventDefault();
    var next = normalizeRoom(ui.room.value);
    var problem = topicProblem(next);
    if (problem) { notice(problem, true); return; }
    ui.room.value = next;
    if (next === room && (!client || client.topics.has(room))) return;
    var old = room;
    room = next;
    ui.currentRoom.textContent = next;
    ui.messages.textContent = '';
    ui.online.textContent = '';
    if (!client) return; // joined once the client exists
    if (old !== next) {
      client.unsubscribe([old]).catch(function (e) {
        notice('could not leave ' + old + ': ' + describe(e), true);
      });
    }
    join(next, true);
  });

  ui.compose.addEventListener('submit', function (ev) {
    ev.preventDefault();
    var text = ui.text.value.trim();
    if (!text || !inRoom()) return;
    client.publish(room, { kind: 'chat', name: currentName(), text: text, at: Date.now() }).catch(function (e) {
      notice('message not sent: ' + describe(e), true);
    });
    ui.text.value = '';
    ui.text.focus();
  });

  ui.currentRoom.textContent = room;
  setStatus(false);
  updateSend();
  start();
})();
