/**
 * firetower.js — a dependency-free browser client for firetower servers
 * (client protocol v1, JSON over a WebSocket, subprotocol firetower.v1.json).
 *
 * It works as a classic script (<script src="/firetower.js">) and when
 * imported as a module (import '/firetower.js'); either way it defines the
 * global class `Firetower` (and module.exports under CommonJS).
 *
 * Features: requests answered by the server's ack as Promises (rejected with
 * an Error whose .code is the server's error code), automatic reconnect with
 * exponential backoff and jitter, resubscription of every topic after a
 * reconnect, and events for deliveries, state changes and errors.
 *
 * Usage:
 *
 *   const ft = new Firetower('/ws');               // or 'ws://host:9999/ws'
 *   ft.on('message', (topic, data) => console.log(topic, data));
 *   ft.on('state', (state) => console.log(state)); // connecting, open, reconnecting, closed
 *   ft.on('error', (err) => console.warn(err.code, err.message));
 *   ft.on('presence', (ev) => console.log(ev.type, ev.topic, ev.count)); // join, leave, count (servers WithPresence)
 *   await ft.connect();
 *   await ft.subscribe(['/chat/world']);           // resolves with the topics in effect
 *   await ft.publish('/chat/world', { text: 'hi' });
 *   try { await ft.subscribe('bad topic'); } catch (e) { e.code === 'invalid_topic'; }
 *   ft.close();
 *
 * The url may also be a function that returns the URL, or a Promise of it;
 * it is called before every connection attempt (the first and each
 * reconnect), so a page can fetch a fresh, short-lived token each time:
 *
 *   const ft = new Firetower(async () => (await (await fetch('token')).json()).url);
 *
 * A function that throws, or a Promise that rejects (or gives no string),
 * counts as a failed attempt: the client emits 'error' with code
 * 'connect_failed', then backs off and tries again like after a drop.
 * close() while the Promise is pending stops there: no socket is opened.
 *
 * Options (all optional): protocols (default ['firetower.v1.json']),
 * reconnect (default true), minDelay / maxDelay in ms (default 500 / 15000):
 * the n-th reconnect attempt in a row waits min(maxDelay, minDelay * 2^(n-1))
 * scaled by a random factor in [0.5, 1). For tests and non-browser hosts:
 * WebSocket, setTimeout, clearTimeout, random.
 *
 * Requests made while the client is not open wait for the next open (after
 * resubscription). A request in flight when the connection drops is rejected
 * with code 'connection_lost'; after close() requests reject with 'closed'.
 * A delivery from a server in legacy mode (no envelope) arrives with topic null.
 *
 * Recovery (topics the server keeps history for; PROTOCOL.md "Recovery"):
 * deliveries on such a topic carry their offset ('message' gets it as a
 * third argument), and the client keeps, per topic, the epoch from the
 * subscribe ack and the offset of the last delivery in ft.positions (a Map
 * topic -> {epoch, offset}). On every reconnect it subscribes again with
 * them as `since`, so the server replays what was published meanwhile
 * before the live deliveries. For each such topic it then emits
 * 'recovery' fn({topic, recovered, since, epoch, offset}) (epoch/offset:
 * the stream's, from the ack), and when recovered is false (the server
 * restarted, or the history no longer reaches back) also 'gap' with the
 * same object: what was published while away is lost to the client, and
 * the application should refetch it. ft.lastRecovery (a Map topic -> that
 * object) keeps the latest outcome per topic. 'gap' also comes, while
 * connected, before a delivery whose offset skips some (since: the position
 * before it, offset: the delivery's): the publications between were lost
 * on the way, as when a server drops messages for a slow consumer.
 *
 *   ft.on('message', (topic, data, offset) => ...);
 *   ft.on('gap', (r) => reloadFromServer(r.topic));
 *   await ft.subscribe('/chat/go', { last: 50 }); // the latest 50 follow the ack
 */
(function (root, factory) {
  var Firetower = factory(root);
  if (typeof module === 'object' && module && module.exports) module.exports = Firetower;
  if (root) root.Firetower = Firetower;
})(typeof globalThis !== 'undefined' ? globalThis : this, function (root) {
  'use strict';

  function ftError(code, message) {
    var e = new Error(message || code);
    e.name = 'FiretowerError';
    e.code = code;
    return e;
  }

  function toList(topics) {
    return Array.isArray(topics) ? topics.slice() : [topics];
  }

  function Firetower(url, opts) {
    if (!(this instanceof Firetower)) return new Firetower(url, opts);
    opts = opts || {};
    this.url = url;
    this.protocols = opts.protocols || ['firetower.v1.json'];
    this.reconnect = opts.reconnect !== false;
    this.minDelay = opts.minDelay > 0 ? opts.minDelay : 500;
    this.maxDelay = Math.max(this.minDelay, opts.maxDelay > 0 ? opts.maxDelay : 15000);
    this.state = 'closed';
    this.topics = new Set();      // subscribed, and subscribed again after a reconnect
    this.positions = new Map();   // history topic -> {epoch, offset}: where to resume from
    this.lastRecovery = new Map(); // history topic -> the latest {topic, recovered, since, epoch, offset}
    this._WS = opts.WebSocket || root.WebSocket;
    this._setTimeout = opts.setTimeout || function (f, ms) { return setTimeout(f, ms); };
    this._clearTimeout = opts.clearTimeout || function (t) { clearTimeout(t); };
    this._random = opts.random || Math.random;
    this._handlers = { message: [], state: [], error: [], recovery: [], gap: [], presence: [] };
    this._ws = null;
    this._live = false;           // the socket is open and the topics restored
    this._pending = new Map();    // id -> {resolve, reject, onAck}
    this._waiters = [];           // requests waiting for the next open
    this._nextId = 1;
    this._attempt = 0;
    this._timer = null;
    this._started = false;
    this._gen = 0;                // attempt generation: a stale url Promise is ignored
  }

  var P = Firetower.prototype;

  /**
   * on(event, fn): 'message' fn(topic, data, offset), 'state' fn(state),
   * 'error' fn(err), 'recovery' fn(r) and 'gap' fn(r) (see Recovery above),
   * 'presence' fn(ev): ev is a join, leave or count event as the server sent it.
   */
  P.on = function (event, fn) {
    if (!this._handlers[event]) throw new Error('firetower: unknown event ' + event);
    this._handlers[event].push(fn);
    return this;
  };

  P.off = function (event, fn) {
    var list = this._handlers[event] || [];
    var i = list.indexOf(fn);
    if (i >= 0) list.splice(i, 1);
    return this;
  };

  P._emit = function (event) {
    var args = Array.prototype.slice.call(arguments, 1);
    this._handlers[event].slice().forEach(function (fn) {
      // A throwing handler must not break the client: report it apart.
      try { fn.apply(null, args); } catch (e) { setTimeout(function () { throw e; }, 0); }
    });
  };

  P._setState = function (s) {
    if (this.state === s) return;
    this.state = s;
    this._emit('state', s);
  };

  /** connect() opens the connection; the Promise resolves once it is open. */
  P.connect = function () {
    var self = this;
    var p = new Promise(function (resolve, reject) { self._waiters.push({ resolve: resolve, reject: reject }); });
    if (!this._started) {
      this._started = true;
      this._attempt = 0;
      this._setState('connecting');
      this._open();
    } else if (this._live) {
      this._flushWaiters();
    }
    return p;
  };

  P._fullURL = function (u) {
    if (typeof u !== 'string' || u === '') throw new Error('the url function gave no URL string');
    if (u.charAt(0) === '/' && root.location) {
      u = (root.location.protocol === 'https:' ? 'wss://' : 'ws://') + root.location.host + u;
    }
    return u;
  };

  // _open starts one connection attempt: it gets the URL (calling the url
  // function, waiting for its Promise), then opens the socket.
  P._open = function () {
    var self = this;
    this._timer = null;
    var gen = ++this._gen;
    var u;
    try {
      u = typeof this.url === 'function' ? this.url() : this.url;
    } catch (e) {
      return this._connectFailed(e);
    }
    if (u && typeof u.then === 'function') {
      // Settled after close(), or after a newer attempt began: ignored.
      var current = function () { return self._gen === gen && self._started; };
      Promise.resolve(u).then(function (v) {
        if (current()) self._dial(v);
      }, function (e) {
        if (current()) self._connectFailed(e);
      });
      return;
    }
    this._dial(u);
  };

  P._connectFailed = function (e) {
    var msg = e && e.message ? e.message : String(e);
    this._emit('error', ftError('connect_failed', msg));
    this._dropped();
  };

  P._dial = function (u) {
    var self = this;
    var sock;
    try {
      sock = new this._WS(this._fullURL(u), this.protocols);
    } catch (e) {
      return this._connectFailed(e);
    }
    this._ws = sock;
    sock.onopen = function () { if (self._ws === sock) self._restore(); };
    sock.onmessage = function (ev) { if (self._ws === sock) self._frame(ev.data); };
    sock.onclose = function () { if (self._ws === sock) self._dropped(); };
    sock.onerror = function () {}; // a close event follows
  };

  // _restore subscribes the new socket to every topic, then goes live.
  P._restore = function () {
    var self = this;
    var sock = this._ws;
    var topics = Array.from(this.topics);
    var done = function (accepted) {
      if (self._ws !== sock) return; // closed (or dropped) meanwhile, by an 'error' handler say
      // Unsubscribed meanwhile (unsubscribe() resolves at once while not live).
      var extra = accepted.filter(function (t) { return !self.topics.has(t); });
      if (extra.length) self._send({ type: 'unsubscribe', topics: extra }).catch(function () {});
      self._live = true;
      self._attempt = 0;
      self._setState('open');
      self._flushWaiters();
    };
    var lost = function (e) { return e.code === 'connection_lost' || e.code === 'closed'; };
    if (topics.length === 0) return done([]);
    this._resubscribe(topics).then(function () { done(topics); }, function (err) {
      if (lost(err)) return;
      self._emit('error', err);
      // Refused as a whole: one by one, forgetting the topics refused.
      Promise.all(topics.map(function (t) {
        return self._resubscribe([t]).then(function () { return t; }, function (e) {
          if (lost(e)) throw e;
          self.topics.delete(t);
          self.positions.delete(t);
          self._emit('error', e);
          return null;
        });
      })).then(function (ok) { done(ok.filter(Boolean)); }, function () {});
    });
  };

  // _resubscribe subscribes the new socket to topics, resuming the history
  // topics from their positions, and reports how each resumed one went.
  P._resubscribe = function (topics) {
    var self = this;
    var since = {};
    var any = false;
    topics.forEach(function (t) {
      var p = self.positions.get(t);
      if (p && typeof p.epoch === 'string') { since[t] = { offset: p.offset, epoch: p.epoch }; any = true; }
    });
    var msg = { type: 'subscribe', topics: topics };
    if (any) msg.since = since;
    return this._send(msg, function (m) { self._track(m, since, true); });
  };

  // _track records the positions of a subscribe ack; it runs when the ack
  // arrives, before the deliveries that follow it. After a reconnect
  // (reconnect true) it emits 'recovery', and 'gap' for a topic not
  // recovered, for every topic the client had a position for.
  P._track = function (m, since, reconnect) {
    var self = this;
    var ps = m && m.positions;
    if (!ps || typeof ps !== 'object') return;
    Object.keys(ps).sort().forEach(function (t) {
      var p = ps[t];
      if (!p || typeof p !== 'object' || typeof p.epoch !== 'string' || typeof p.offset !== 'number') return;
      if (!self.topics.has(t)) return; // unsubscribed meanwhile
      var from = since && Object.prototype.hasOwnProperty.call(since, t) ? since[t] : null;
      var r = { topic: t, recovered: p.recovered === true, since: from, epoch: p.epoch, offset: p.offset };
      self.lastRecovery.set(t, r);
      // Recovered: the replay brings the offset from since up to the ack's.
      self.positions.set(t, r.recovered && from ? { epoch: p.epoch, offset: from.offset } : { epoch: p.epoch, offset: p.offset });
      if (reconnect && from) {
        self._emit('recovery', r);
        if (!r.recovered) self._emit('gap', r);
      }
    });
  };

  P._flushWaiters = function () {
    var w = this._waiters;
    this._waiters = [];
    w.forEach(function (x) { x.resolve(); });
  };

  P._dropped = function () {
    this._ws = null;
    this._live = false;
    this._failPending(ftError('connection_lost', 'the connection dropped before the answer'));
    if (!this.reconnect) {
      this._stop();
      return;
    }
    this._setState('reconnecting');
    this._timer = this._setTimeout(this._open.bind(this), this.nextDelay());
  };

  /** nextDelay() is the delay before the next reconnect attempt (and counts it). */
  P.nextDelay = function () {
    this._attempt++;
    var base = Math.min(this.maxDelay, this.minDelay * Math.pow(2, this._attempt - 1));
    return Math.floor(base * (0.5 + this._random() / 2));
  };

  P._failPending = function (err) {
    var p = this._pending;
    this._pending = new Map();
    p.forEach(function (x) { x.reject(err); });
  };

  P._frame = function (raw) {
    var m;
    try { m = JSON.parse(raw); } catch (e) {
      this._emit('error', ftError('bad_frame', 'unreadable frame from the server'));
      return;
    }
    var known = m && typeof m === 'object' && !Array.isArray(m) &&
      ['publish', 'ack', 'error', 'pong', 'join', 'leave', 'count'].indexOf(m.type) >= 0;
    if (!known) return this._emit('message', null, m); // legacy delivery
    if (m.type === 'join' || m.type === 'leave' || m.type === 'count') return this._emit('presence', m);
    if (m.type === 'publish') {
      if (typeof m.offset === 'number') {
        var pos = this.positions.get(m.topic);
        if (pos && m.offset > pos.offset) {
          // Offsets skipped: the publications between were lost on the way
          // (a server dropping messages for a slow consumer): a gap.
          var skipped = m.offset > pos.offset + 1;
          var from = { offset: pos.offset, epoch: pos.epoch };
          pos.offset = m.offset;
          if (skipped) this._emit('gap', { topic: m.topic, recovered: false, since: from, epoch: pos.epoch, offset: m.offset });
        }
      }
      return this._emit('message', m.topic, m.data, m.offset);
    }
    var p = m.id !== undefined && m.id !== null ? this._pending.get(m.id) : undefined;
    if (p) this._pending.delete(m.id);
    if (m.type === 'error') {
      var err = ftError(m.code, m.message);
      if (p) p.reject(err); else this._emit('error', err);
      return;
    }
    if (p) {
      if (p.onAck) p.onAck(m);
      p.resolve(m.type === 'ack' && m.topics ? m.topics : undefined);
    }
  };

  // _send sends msg with a fresh id on the current socket and settles with
  // the answer. The socket must be open.
  P._send = function (msg, onAck) {
    var self = this;
    return new Promise(function (resolve, reject) {
      var id = self._nextId++;
      msg.id = id;
      self._pending.set(id, { resolve: resolve, reject: reject, onAck: onAck });
      try {
        self._ws.send(JSON.stringify(msg));
      } catch (e) {
        self._pending.delete(id);
        reject(ftError('connection_lost', e.message));
      }
    });
  };

  // _request waits for the client to be live, then sends msg.
  P._request = function (msg, onAck) {
    var self = this;
    if (!this._started) return Promise.reject(ftError('closed', 'not connected: call connect() first'));
    if (this._live) return this._send(msg, onAck);
    return new Promise(function (resolve, reject) {
      self._waiters.push({ resolve: resolve, reject: reject });
    }).then(function () { return self._send(msg, onAck); });
  };

  /**
   * subscribe(topics[, opts]): a topic or an array; resolves with the topics
   * in effect. opts.last = N asks for the latest N publications of each
   * history topic (they follow the ack, oldest first); opts.since =
   * {topic: {offset, epoch}} resumes from positions the page kept itself.
   * The positions from the ack are in ft.positions and ft.lastRecovery.
   */
  P.subscribe = function (topics, opts) {
    var self = this;
    var list = toList(topics);
    var msg = { type: 'subscribe', topics: list };
    var since = opts && opts.since && typeof opts.since === 'object' ? opts.since : null;
    if (since) msg.since = since;
    if (opts && opts.last > 0) msg.last = Math.floor(opts.last);
    return this._request(msg, function (m) {
      list.forEach(function (t) { self.topics.add(t); });
      self._track(m, since, false);
    });
  };

  /** unsubscribe(topics): forgotten at once; resolves on the ack (at once when not open). */
  P.unsubscribe = function (topics) {
    var list = toList(topics);
    var self = this;
    list.forEach(function (t) { self.topics.delete(t); self.positions.delete(t); self.lastRecovery.delete(t); });
    if (!this._live) return Promise.resolve(list);
    return this._send({ type: 'unsubscribe', topics: list }).catch(function (e) {
      if (e.code === 'connection_lost') return list; // the server forgot them too
      throw e;
    });
  };

  /** publish(topic, data): data is any JSON value; resolves on the ack. */
  P.publish = function (topic, data) {
    return this._request({ type: 'publish', topics: [topic], data: data === undefined ? null : data });
  };

  /** ping(): resolves on the server's pong. */
  P.ping = function () {
    return this._request({ type: 'ping' });
  };

  /** close(): closes the connection (1000), stops reconnecting, rejects what waits. */
  P.close = function () {
    var ws = this._ws;
    this._ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(1000); } catch (e) { /* already closed */ }
    }
    this._stop();
  };

  P._stop = function () {
    this._gen++; // a url Promise still pending opens nothing
    if (this._timer !== null) this._clearTimeout(this._timer);
    this._timer = null;
    this._live = false;
    this._started = false;
    var err = ftError('closed', 'the client is closed');
    this._failPending(err);
    var w = this._waiters;
    this._waiters = [];
    w.forEach(function (x) { x.reject(err); });
    this._setState('closed');
  };

  return Firetower;
});
