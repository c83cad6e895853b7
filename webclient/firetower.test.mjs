// Tests for firetower.js with Node's built-in runner: node --test webclient/
// A fake WebSocket records the frames sent and lets a test inject the
// server's messages; timers and Math.random are injected, so nothing waits.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import vm from 'node:vm';

const src = await readFile(new URL('./firetower.js', import.meta.url), 'utf8');

// Under Node the file is CommonJS (no package.json says otherwise).
const { default: Firetower } = await import('./firetower.js');

class FakeWS {
  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.sent = [];
    this.readyState = 0;
    this.closedWith = undefined;
    FakeWS.all.push(this);
  }
  send(s) {
    if (this.readyState !== 1) throw new Error('not open');
    this.sent.push(JSON.parse(s));
  }
  close(code) { this.readyState = 3; this.closedWith = code; }
  // test side
  open() { this.readyState = 1; this.onopen && this.onopen({}); }
  recv(m) { this.onmessage && this.onmessage({ data: typeof m === 'string' ? m : JSON.stringify(m) }); }
  drop(code = 1006) { this.readyState = 3; this.onclose && this.onclose({ code, reason: '' }); }
  last() { return this.sent[this.sent.length - 1]; }
}

// setup builds a client with fake WebSocket, timers and randomness.
function setup(opts = {}, url = 'ws://example.test/ws') {
  FakeWS.all = [];
  const timers = [];
  const rnd = { value: 0.5 };
  const ft = new Firetower(url, {
    WebSocket: FakeWS,
    setTimeout: (fn, ms) => { const t = { fn, ms, cleared: false }; timers.push(t); return t; },
    clearTimeout: (t) => { t.cleared = true; },
    random: () => rnd.value,
    minDelay: 100,
    maxDelay: 1000,
    ...opts,
  });
  const states = [];
  const messages = [];
  const errors = [];
  ft.on('state', (s) => states.push(s));
  ft.on('message', (topic, data) => messages.push([topic, data]));
  ft.on('error', (e) => errors.push(e));
  const ws = () => FakeWS.all[FakeWS.all.length - 1];
  // fire runs the one pending timer.
  const fire = () => {
    const live = timers.filter((t) => !t.cleared && !t.done);
    assert.equal(live.length, 1, 'exactly one reconnect timer pending');
    live[0].done = true;
    live[0].fn();
    return live[0].ms;
  };
  return { ft, ws, timers, rnd, states, messages, errors, fire };
}

const tick = () => new Promise((r) => setImmediate(r));

async function connected(opts) {
  const s = setup(opts);
  const p = s.ft.connect();
  assert.equal(s.ws().url, 'ws://example.test/ws');
  assert.deepEqual(s.ws().protocols, ['firetower.v1.json']);
  s.ws().open();
  await p;
  return s;
}

test('loads as a classic script, as an ES module and under CommonJS', async () => {
  assert.equal(typeof Firetower, 'function');
  // A classic <script>: a fresh global, no module system.
  const ctx = {};
  vm.runInNewContext(src, ctx);
  assert.equal(typeof ctx.Firetower, 'function');
  // <script type="module"> / import: strict, no `this`, no `module`.
  delete globalThis.Firetower;
  await import('data:text/javascript,' + encodeURIComponent(src));
  assert.equal(typeof globalThis.Firetower, 'function');
});

test('acks resolve requests; deliveries are events', async () => {
  const { ft, ws, states, messages } = await connected();
  assert.deepEqual(states, ['connecting', 'open']);

  const sub = ft.subscribe(['a', 'b']);
  assert.deepEqual(ws().last(), { type: 'subscribe', topics: ['a', 'b'], id: 1 });
  ws().recv({ type: 'ack', id: 1, topics: ['a', 'b'] });
  assert.deepEqual(await sub, ['a', 'b']);
  assert.deepEqual([...ft.topics], ['a', 'b']);

  const pub = ft.publish('a', { text: 'hi' });
  assert.deepEqual(ws().last(), { type: 'publish', topics: ['a'], data: { text: 'hi' }, id: 2 });
  ws().recv({ type: 'ack', id: 2 });
  await pub;

  const ping = ft.ping();
  assert.deepEqual(ws().last(), { type: 'ping', id: 3 });
  ws().recv({ type: 'pong', id: 3 });
  await ping;

  ws().recv({ type: 'publish', topic: 'a', data: { text: 'hi' } });
  ws().recv({ kind: 'legacy' }); // legacy delivery: raw data, no envelope
  assert.deepEqual(messages, [['a', { text: 'hi' }], [null, { kind: 'legacy' }]]);

  const unsub = ft.unsubscribe('b');
  assert.deepEqual([...ft.topics], ['a']);
  assert.deepEqual(ws().last(), { type: 'unsubscribe', topics: ['b'], id: 4 });
  ws().recv({ type: 'ack', id: 4, topics: ['b'] });
  await unsub;
});

test('server errors reject with the code', async () => {
  const { ft, ws, errors } = await connected();
  const sub = ft.subscribe('bad topic');
  ws().recv({ type: 'error', id: 1, code: 'invalid_topic', message: 'topic contains " "' });
  await assert.rejects(sub, (e) => e.code === 'invalid_topic' && e.message === 'topic contains " "');
  assert.equal(ft.topics.size, 0, 'a refused topic is not kept');

  const pub = ft.publish('x', 1);
  ws().recv({ type: 'error', id: 2, code: 'forbidden', message: 'not subscribed' });
  await assert.rejects(pub, { code: 'forbidden' });

  // An error with no id (or an unknown one) is an 'error' event.
  ws().recv({ type: 'error', code: 'rate_limited', message: 'slow down' });
  ws().recv('{not json');
  assert.deepEqual(errors.map((e) => e.code), ['rate_limited', 'bad_frame']);
});

test('reconnects and resubscribes every topic', async () => {
  const { ft, ws, states, fire } = await connected();
  const sub = ft.subscribe(['a', 'b', 'c']);
  ws().recv({ type: 'ack', id: 1, topics: ['a', 'b', 'c'] });
  await sub;

  const inflight = ft.publish('a', 1);
  const first = ws();
  first.drop();
  await assert.rejects(inflight, { code: 'connection_lost' });
  assert.equal(ft.state, 'reconnecting');

  // While reconnecting: unsubscribe is local, other requests wait for open.
  await ft.unsubscribe('c');
  const waiting = ft.publish('a', 2);

  fire();
  assert.notEqual(ws(), first);
  ws().open();
  assert.equal(ft.state, 'reconnecting', 'not open before the topics are restored');
  const resub = ws().last();
  assert.deepEqual(resub, { type: 'subscribe', topics: ['a', 'b'], id: resub.id });
  // Unsubscribed while the resubscription is on the wire: undone once acked.
  await ft.unsubscribe('b');
  ws().recv({ type: 'ack', id: resub.id, topics: ['a', 'b'] });
  await tick();
  assert.deepEqual(states, ['connecting', 'open', 'reconnecting', 'open']);
  const undo = ws().sent[1];
  assert.deepEqual(undo, { type: 'unsubscribe', topics: ['b'], id: undo.id });
  assert.deepEqual([...ft.topics], ['a']);
  const pub = ws().last();
  assert.deepEqual(pub, { type: 'publish', topics: ['a'], data: 2, id: pub.id });
  ws().recv({ type: 'ack', id: pub.id });
  await waiting;
});

test('a topic refused on resubscription is forgotten and reported', async () => {
  const { ft, ws, errors, fire } = await connected();
  const sub = ft.subscribe(['ok', 'gone']);
  ws().recv({ type: 'ack', id: 1, topics: ['ok', 'gone'] });
  await sub;
  ws().drop();
  fire();
  ws().open();
  const all = ws().last();
  ws().recv({ type: 'error', id: all.id, code: 'forbidden', message: 'no' });
  await tick();
  const [one, two] = ws().sent.slice(1);
  assert.deepEqual(one.topics, ['ok']);
  assert.deepEqual(two.topics, ['gone']);
  ws().recv({ type: 'ack', id: one.id, topics: ['ok'] });
  ws().recv({ type: 'error', id: two.id, code: 'forbidden', message: 'no' });
  await tick();
  assert.equal(ft.state, 'open');
  assert.deepEqual([...ft.topics], ['ok']);
  assert.deepEqual(errors.map((e) => e.code), ['forbidden', 'forbidden']);
});

test('backoff grows exponentially, capped, with jitter in [0.5, 1)', () => {
  const s = setup({ minDelay: 100, maxDelay: 1000 });
  s.ft.connect();
  // Every attempt fails before opening; the n-th waits min*2^(n-1), capped.
  const bases = [100, 200, 400, 800, 1000, 1000, 1000];
  for (const [i, base] of bases.entries()) {
    s.rnd.value = i % 2 ? 0 : 0.999999;
    s.ws().drop();
    const ms = s.fire();
    if (i % 2) assert.equal(ms, base / 2, `attempt ${i + 1}: lowest delay`);
    else assert.ok(ms < base && ms >= base * 0.99, `attempt ${i + 1}: ${ms} should be just under ${base}`);
  }
  assert.equal(FakeWS.all.length, bases.length + 1, 'one socket per attempt');
  // An open connection resets the sequence.
  s.ws().open();
  s.rnd.value = 0;
  s.ws().drop();
  assert.equal(s.fire(), 50);
  assert.deepEqual(s.states, ['connecting', 'reconnecting', 'open', 'reconnecting']);
});

test('close stops everything; reconnect:false ends on a drop', async () => {
  const { ft, ws, states, timers } = await connected();
  const pending = ft.ping();
  const sock = ws();
  ft.close();
  assert.equal(sock.closedWith, 1000);
  await assert.rejects(pending, { code: 'closed' });
  await assert.rejects(ft.ping(), { code: 'closed' });
  assert.equal(timers.length, 0, 'no reconnect after close');
  assert.deepEqual(states, ['connecting', 'open', 'closed']);

  // Closing while a reconnect is scheduled cancels it.
  const s = await connected();
  s.ws().drop();
  const waiter = s.ft.publish('a', 1);
  s.ft.close();
  assert.equal(s.timers[0].cleared, true);
  await assert.rejects(waiter, { code: 'closed' });

  const n = await connected({ reconnect: false });
  n.ws().drop();
  assert.equal(n.ft.state, 'closed');
  assert.equal(n.timers.length, 0);
  await assert.rejects(n.ft.subscribe('a'), { code: 'closed' });
});

// urlSetup builds a client whose url is the function fn, called with the
// attempt's number; s.calls records the calls.
function urlSetup(fn, opts = {}) {
  const calls = [];
  const s = setup(opts, () => { calls.push(calls.length + 1); return fn(calls.length); });
  return { ...s, calls };
}

// deferred is a Promise with its resolve and reject.
function deferred() {
  let resolve, reject;
  const promise = new Promise((res, rej) => { resolve = res; reject = rej; });
  return { promise, resolve, reject };
}

test('a url function is called before every attempt', async () => {
  const s = urlSetup((n) => 'ws://example.test/ws?token=' + n);
  const p = s.ft.connect();
  assert.deepEqual(s.calls, [1]);
  assert.equal(s.ws().url, 'ws://example.test/ws?token=1', 'a plain return value dials at once');
  s.ws().open();
  await p;
  s.ws().drop();
  assert.equal(s.calls.length, 1, 'not called before the reconnect is due');
  s.fire();
  assert.deepEqual(s.calls, [1, 2]);
  assert.equal(s.ws().url, 'ws://example.test/ws?token=2');
  s.ws().drop(); // fails before opening
  s.fire();
  assert.equal(s.ws().url, 'ws://example.test/ws?token=3');
  assert.equal(FakeWS.all.length, 3, 'one socket per attempt');
  assert.deepEqual(s.errors, []);
  s.ft.close();
});

test('a url function may return a Promise', async () => {
  const pending = [];
  const s = urlSetup(() => { const d = deferred(); pending.push(d); return d.promise; });
  const connected = s.ft.connect();
  const sub = s.ft.subscribe('$firetower/stats');
  assert.equal(s.ft.state, 'connecting');
  assert.equal(FakeWS.all.length, 0, 'no socket before the URL is known');
  pending[0].resolve('ws://example.test/ws?system_token=a');
  await tick();
  assert.equal(FakeWS.all.length, 1);
  assert.equal(s.ws().url, 'ws://example.test/ws?system_token=a');
  s.ws().open();
  await connected;
  assert.deepEqual(s.ws().last(), { type: 'subscribe', topics: ['$firetower/stats'], id: 1 });
  s.ws().recv({ type: 'ack', id: 1, topics: ['$firetower/stats'] });
  await sub;

  // A reconnect asks again, waits for the new URL, and resubscribes.
  s.ws().drop();
  assert.equal(s.ft.state, 'reconnecting');
  s.fire();
  assert.equal(pending.length, 2);
  assert.equal(FakeWS.all.length, 1);
  pending[1].resolve('ws://example.test/ws?system_token=b');
  await tick();
  assert.equal(s.ws().url, 'ws://example.test/ws?system_token=b');
  s.ws().open();
  const resub = s.ws().last();
  assert.deepEqual(resub, { type: 'subscribe', topics: ['$firetower/stats'], id: resub.id });
  s.ws().recv({ type: 'ack', id: resub.id, topics: ['$firetower/stats'] });
  await tick();
  assert.deepEqual(s.states, ['connecting', 'open', 'reconnecting', 'open']);
  s.ft.close();
});

test('a url function that rejects or throws is a failed attempt', async () => {
  const answers = [
    () => Promise.reject(new Error('token endpoint said 503')),
    () => { throw new Error('no token'); },
    () => Promise.resolve(undefined), // no URL at all
    () => Promise.resolve('ws://example.test/ws?system_token=ok'),
  ];
  const s = urlSetup((n) => answers[n - 1]());
  s.rnd.value = 0;
  const connected = s.ft.connect();
  await tick();
  assert.deepEqual(s.errors.map((e) => e.code), ['connect_failed']);
  assert.equal(s.errors[0].message, 'token endpoint said 503');
  assert.equal(s.ft.state, 'reconnecting');
  assert.equal(s.fire(), 50, 'the first retry waits minDelay scaled by the jitter');

  // A synchronous throw fails the attempt too, and the backoff grows.
  assert.deepEqual(s.errors.map((e) => e.code), ['connect_failed', 'connect_failed']);
  assert.equal(s.errors[1].message, 'no token');
  assert.equal(s.fire(), 100);
  await tick();
  assert.equal(s.errors.length, 3);
  assert.equal(s.errors[2].code, 'connect_failed');
  assert.equal(FakeWS.all.length, 0, 'no socket for a failed attempt');
  assert.equal(s.fire(), 200);
  await tick();
  assert.equal(FakeWS.all.length, 1);
  assert.equal(s.ws().url, 'ws://example.test/ws?system_token=ok');
  s.ws().open();
  await connected;
  assert.deepEqual(s.states, ['connecting', 'reconnecting', 'open']);

  // With reconnect: false a failed attempt ends the client.
  const once = urlSetup(() => Promise.reject(new Error('nope')), { reconnect: false });
  const p = once.ft.connect();
  await assert.rejects(p, { code: 'closed' });
  assert.equal(once.ft.state, 'closed');
  assert.deepEqual(once.errors.map((e) => e.code), ['connect_failed']);
  assert.equal(once.timers.length, 0);
});

test('close() while the url Promise is pending opens no socket', async () => {
  const pending = [];
  const s = urlSetup(() => { const d = deferred(); pending.push(d); return d.promise; });
  const connected = s.ft.connect();
  const req = s.ft.ping();
  s.ft.close();
  await assert.rejects(connected, { code: 'closed' });
  await assert.rejects(req, { code: 'closed' });
  pending[0].resolve('ws://example.test/ws?late');
  await tick();
  assert.equal(FakeWS.all.length, 0, 'a URL that comes after close() is not dialled');
  assert.equal(s.ft.state, 'closed');
  assert.equal(s.timers.length, 0);

  // A rejection after close() is not reported and schedules nothing.
  const r = urlSetup(() => { const d = deferred(); pending.push(d); return d.promise; });
  r.ft.connect().catch(() => {});
  r.ft.close();
  pending[1].reject(new Error('late failure'));
  await tick();
  assert.deepEqual(r.errors, []);
  assert.equal(r.timers.length, 0);
  assert.deepEqual(r.states, ['connecting', 'closed']);

  // close() then connect() again: only the new attempt's URL is dialled.
  const again = urlSetup(() => { const d = deferred(); pending.push(d); return d.promise; });
  again.ft.connect().catch(() => {});
  again.ft.close();
  const second = again.ft.connect();
  assert.equal(pending.length, 4);
  pending[3].resolve('ws://example.test/ws?new');
  pending[2].resolve('ws://example.test/ws?old');
  await tick();
  assert.equal(FakeWS.all.length, 1);
  assert.equal(again.ws().url, 'ws://example.test/ws?new');
  again.ws().open();
  await second;
  again.ft.close();
});

test('a url function may return a path on the page\'s host', async () => {
  const saved = globalThis.location;
  globalThis.location = { protocol: 'https:', host: 'dash.example:8443' };
  try {
    const s = urlSetup(() => Promise.resolve('/ws?system_token=x'));
    s.ft.connect().catch(() => {});
    await tick();
    assert.equal(s.ws().url, 'wss://dash.example:8443/ws?system_token=x');
    s.ft.close();
  } finally {
    if (saved === undefined) delete globalThis.location; else globalThis.location = saved;
  }
});

test('close() from an error handler during the resubscription leaves the client closed', async () => {
  const { ft, ws, fire, states } = await connected();
  const sub = ft.subscribe('only');
  ws().recv({ type: 'ack', id: 1, topics: ['only'] });
  await sub;
  ws().drop();
  fire();
  ws().open();
  ft.on('error', () => { if (!ft.topics.has('only')) ft.close(); });
  const all = ws().last();
  ws().recv({ type: 'error', id: all.id, code: 'forbidden', message: 'no' });
  await tick();
  const one = ws().last();
  ws().recv({ type: 'error', id: one.id, code: 'forbidden', message: 'no' });
  await tick();
  assert.equal(ft.state, 'closed');
  assert.deepEqual(states, ['connecting', 'open', 'reconnecting', 'closed']);
  await assert.rejects(ft.ping(), { code: 'closed' });
});

// ---- recovery (PROTOCOL.md "Recovery") ----

test('deliveries carry their offset; positions follow acks and deliveries', async () => {
  const { ft, ws } = await connected();
  const got = [];
  ft.on('message', (topic, data, offset) => got.push([topic, data, offset]));
  const sub = ft.subscribe(['/chat/a', 'plain'], { last: 2 });
  assert.deepEqual(ws().last(), { type: 'subscribe', topics: ['/chat/a', 'plain'], last: 2, id: 1 });
  ws().recv({ type: 'ack', id: 1, topics: ['/chat/a', 'plain'], positions: { '/chat/a': { epoch: 'e1', offset: 7, recovered: false } } });
  assert.deepEqual(await sub, ['/chat/a', 'plain']);
  assert.deepEqual(ft.positions.get('/chat/a'), { epoch: 'e1', offset: 7 });
  assert.equal(ft.positions.has('plain'), false, 'no position for a topic without history');
  assert.equal(ft.lastRecovery.get('/chat/a').recovered, false);
  ws().recv({ type: 'publish', topic: '/chat/a', data: 'six', offset: 6 }); // the last 2
  ws().recv({ type: 'publish', topic: '/chat/a', data: 'seven', offset: 7 });
  ws().recv({ type: 'publish', topic: '/chat/a', data: 'eight', offset: 8 }); // live
  ws().recv({ type: 'publish', topic: 'plain', data: 1 });
  assert.deepEqual(got, [['/chat/a', 'six', 6], ['/chat/a', 'seven', 7], ['/chat/a', 'eight', 8], ['plain', 1, undefined]]);
  assert.deepEqual(ft.positions.get('/chat/a'), { epoch: 'e1', offset: 8 });

  // since given by the page is sent as is
  const s2 = ft.subscribe('/chat/b', { since: { '/chat/b': { offset: 3, epoch: 'e9' } } });
  assert.deepEqual(ws().last(), { type: 'subscribe', topics: ['/chat/b'], since: { '/chat/b': { offset: 3, epoch: 'e9' } }, id: 2 });
  ws().recv({ type: 'ack', id: 2, topics: ['/chat/b'], positions: { '/chat/b': { epoch: 'e9', offset: 5, recovered: true } } });
  await s2;
  assert.deepEqual(ft.positions.get('/chat/b'), { epoch: 'e9', offset: 3 }, 'the replay brings it up to 5');

  await Promise.all([ft.unsubscribe('/chat/a'), (ws().recv({ type: 'ack', id: 3, topics: ['/chat/a'] }), null)]);
  assert.equal(ft.positions.has('/chat/a'), false, 'forgotten on unsubscribe');
});

test('every reconnect resubscribes with since; recovered and gap are reported', async () => {
  const { ft, ws, fire } = await connected();
  const recoveries = [];
  const gaps = [];
  const order = [];
  ft.on('recovery', (r) => { recoveries.push(r); order.push('recovery:' + r.topic); });
  ft.on('gap', (r) => { gaps.push(r); order.push('gap:' + r.topic); });
  ft.on('message', (topic, data, offset) => order.push(topic + '#' + offset));
  const sub = ft.subscribe(['a', 'b', 'plain']);
  ws().recv({ type: 'ack', id: 1, topics: ['a', 'b', 'plain'], positions: {
    a: { epoch: 'E', offset: 10, recovered: false }, b: { epoch: 'E', offset: 4, recovered: false } } });
  await sub;
  ws().recv({ type: 'publish', topic: 'a', data: 'x', offset: 11 });
  assert.deepEqual(recoveries, [], 'no recovery event for the first subscribe');

  // First reconnect: a recovers, b's history no longer reaches back.
  ws().drop();
  fire();
  ws().open();
  const resub = ws().last();
  assert.deepEqual(resub, { type: 'subscribe', topics: ['a', 'b', 'plain'],
    since: { a: { offset: 11, epoch: 'E' }, b: { offset: 4, epoch: 'E' } }, id: resub.id });
  ws().recv({ type: 'ack', id: resub.id, topics: ['a', 'b', 'plain'], positions: {
    a: { epoch: 'E', offset: 13, recovered: true }, b: { epoch: 'E', offset: 90, recovered: false } } });
  ws().recv({ type: 'publish', topic: 'a', data: 'y', offset: 12 });
  ws().recv({ type: 'publish', topic: 'a', data: 'z', offset: 13 });
  await tick();
  assert.equal(ft.state, 'open');
  assert.deepEqual(recoveries, [
    { topic: 'a', recovered: true, since: { offset: 11, epoch: 'E' }, epoch: 'E', offset: 13 },
    { topic: 'b', recovered: false, since: { offset: 4, epoch: 'E' }, epoch: 'E', offset: 90 },
  ]);
  assert.deepEqual(gaps.map((g) => g.topic), ['b']);
  assert.deepEqual(order.slice(1), ['recovery:a', 'recovery:b', 'gap:b', 'a#12', 'a#13'], 'events come before the replay');
  assert.deepEqual(ft.positions.get('a'), { epoch: 'E', offset: 13 });
  assert.deepEqual(ft.positions.get('b'), { epoch: 'E', offset: 90 }, 'a gap takes the ack position');

  // Second reconnect: the server restarted (new epoch): both are gaps.
  ws().drop();
  fire();
  ws().open();
  const again = ws().last();
  assert.deepEqual(again.since, { a: { offset: 13, epoch: 'E' }, b: { offset: 90, epoch: 'E' } });
  ws().recv({ type: 'ack', id: again.id, topics: ['a', 'b', 'plain'], positions: {
    a: { epoch: 'F', offset: 0, recovered: false }, b: { epoch: 'F', offset: 0, recovered: false } } });
  await tick();
  assert.deepEqual(gaps.map((g) => g.topic), ['b', 'a', 'b']);
  assert.deepEqual(ft.positions.get('a'), { epoch: 'F', offset: 0 });
  assert.equal(ft.lastRecovery.get('a').recovered, false);
});

test('a refused resubscription still carries since one topic at a time', async () => {
  const { ft, ws, fire } = await connected();
  const sub = ft.subscribe(['a', 'b']);
  ws().recv({ type: 'ack', id: 1, topics: ['a', 'b'], positions: { a: { epoch: 'E', offset: 2, recovered: false } } });
  await sub;
  ws().drop();
  fire();
  ws().open();
  const whole = ws().last();
  ws().recv({ type: 'error', id: whole.id, code: 'forbidden', message: 'no b' });
  await tick();
  const [one, two] = ws().sent.slice(-2);
  assert.deepEqual(one, { type: 'subscribe', topics: ['a'], since: { a: { offset: 2, epoch: 'E' } }, id: one.id });
  assert.deepEqual(two, { type: 'subscribe', topics: ['b'], id: two.id });
  ws().recv({ type: 'ack', id: one.id, topics: ['a'], positions: { a: { epoch: 'E', offset: 2, recovered: true } } });
  ws().recv({ type: 'error', id: two.id, code: 'forbidden', message: 'no b' });
  await tick();
  assert.equal(ft.state, 'open');
  assert.deepEqual([...ft.topics], ['a']);
  assert.equal(ft.lastRecovery.get('a').recovered, true);
});

test('presence events go to presence handlers, not to message handlers', async () => {
  const { ft, ws, messages } = await connected();
  const events = [];
  ft.on('presence', (ev) => events.push(ev));
  ws().recv({ type: 'join', topic: 'a', conn: '1-x-1', user: 'alice' });
  ws().recv({ type: 'count', topic: 'a', count: 2 });
  ws().recv({ type: 'leave', topic: 'a', conn: '1-x-1', user: 'alice' });
  ws().recv({ type: 'onSubscribe', data: 2 }); // legacy count: a raw delivery
  assert.deepEqual(events.map((e) => e.type), ['join', 'count', 'leave']);
  assert.equal(events[1].count, 2);
  assert.deepEqual(messages, [[null, { type: 'onSubscribe', data: 2 }]]);
});

test('a delivery that skips offsets is a gap, emitted before it', async () => {
  const { ft, ws } = await connected();
  const order = [];
  ft.on('gap', (r) => order.push('gap ' + r.topic + ' ' + r.since.offset + '->' + r.offset));
  ft.on('message', (topic, data, offset) => order.push(topic + '#' + offset));
  const sub = ft.subscribe('/h', { last: 2 });
  ws().recv({ type: 'ack', id: 1, topics: ['/h'], positions: { '/h': { epoch: 'E', offset: 2, recovered: false } } });
  await sub;
  ws().recv({ type: 'publish', topic: '/h', data: 1, offset: 1 }); // the last 2: no gap
  ws().recv({ type: 'publish', topic: '/h', data: 2, offset: 2 });
  ws().recv({ type: 'publish', topic: '/h', data: 5, offset: 5 }); // 3 and 4 lost
  ws().recv({ type: 'publish', topic: '/h', data: 6, offset: 6 });
  assert.deepEqual(order, ['/h#1', '/h#2', 'gap /h 2->5', '/h#5', '/h#6']);
  assert.deepEqual(ft.positions.get('/h'), { epoch: 'E', offset: 6 });
});
