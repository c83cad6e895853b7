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
function setup(opts = {}) {
  FakeWS.all = [];
  const timers = [];
  const rnd = { value: 0.5 };
  const ft = new Firetower('ws://example.test/ws', {
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
