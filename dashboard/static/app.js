// firetower dashboard. Its live data comes over a websocket through
// firetower.js: every node of the cluster publishes its NodeStats on the
// stats topic once per interval, and this page subscribes to it with a
// system token it fetches before every connection attempt. Plain JS, no
// dependencies; the charts are inline SVG drawn here.
(function () {
  'use strict';

  const STATS = document.body.dataset.statsTopic;
  const HISTORY = 120;   // points kept per chart
  const GONE_AFTER = 3;  // intervals without a message: the node is shown as gone
  const DROP_AFTER = 20; // intervals without a message: the node is dropped
  const SEARCH_REFRESH = 3000; // ms between two runs of the same search

  const $ = (id) => document.getElementById(id);

  // ---- formatting ----
  const intFmt = new Intl.NumberFormat('en-US');
  const fmtInt = (v) => intFmt.format(v);
  function fmtRate(v) {
    if (!v) return '0';
    if (v < 10) return v.toFixed(1);
    return intFmt.format(Math.round(v));
  }
  function fmtBytes(v) {
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (v >= 1024 && i < units.length - 1) {
      v /= 1024;
      i++;
    }
    return (i === 0 || v >= 100 ? Math.round(v) : v.toFixed(1)) + ' ' + units[i];
  }
  // fmtMs shows a latency in ms with two significant digits.
  function fmtMs(v) {
    if (v === null || v === undefined) return '–';
    return v >= 100 ? intFmt.format(Math.round(v)) : String(Number(v.toPrecision(2)));
  }

  // set shows text in the element and keeps the raw value in data-value
  // ('' for none), which is what tests and scripts read.
  function set(el, text, value) {
    if (typeof el === 'string') el = $(el);
    if (!el) return;
    if (el.textContent !== text) el.textContent = text;
    const v = value === undefined || value === null ? '' : String(value);
    if (el.dataset.value !== v) el.dataset.value = v;
  }

  function cell(cls, text, value) {
    const td = document.createElement('td');
    td.className = cls;
    set(td, text, value);
    return td;
  }

  // ---- per-node state ----
  // id -> {id, last (NodeStats), rates, seen (ms, page clock), interval (s), gone}
  const nodes = new Map();
  let ownNode = null; // the node this page's socket is connected to

  const counters = {
    in: (s) => s.stats.MessagesIn,
    publishes: (s) => s.stats.Publishes,
    deliveries: (s) => s.stats.Deliveries,
    drops: (s) => sumValues(s.drops),
    slowClosed: (s) => s.stats.SlowClosed,
    bytesOut: (s) => (s.stats.Transport || {}).BytesOut || 0
  };

  function sumValues(m) {
    let n = 0;
    for (const k in m || {}) n += Number(m[k]) || 0;
    return n;
  }

  // rates between two snapshots of the same node, or null when a counter
  // went back (the node restarted).
  function rates(prev, cur, dt) {
    const r = {};
    for (const k in counters) {
      const d = counters[k](cur) - counters[k](prev);
      if (!(d >= 0)) return null;
      r[k] = d / dt;
    }
    r.dropsBy = {};
    for (const reason in cur.drops || {}) {
      const d = (cur.drops[reason] || 0) - ((prev.drops || {})[reason] || 0);
      r.dropsBy[reason] = d >= 0 ? d / dt : 0;
    }
    return r;
  }

  function valid(ns) {
    return ns && typeof ns === 'object' && Number.isInteger(ns.node) && ns.stats && typeof ns.stats === 'object' &&
      !Number.isNaN(Date.parse(ns.time));
  }

  function onStats(ns) {
    if (!valid(ns)) {
      console.warn('dashboard: ignoring a malformed stats message', ns);
      return;
    }
    let n = nodes.get(ns.node);
    if (!n) {
      n = { id: ns.node, last: null, rates: null };
      nodes.set(ns.node, n);
    }
    const interval = ns.interval > 0 ? ns.interval : 1;
    if (n.last) {
      const dt = (Date.parse(ns.time) - Date.parse(n.last.time)) / 1000;
      if (dt <= 0) return; // a repeat or out of order
      n.rates = dt < DROP_AFTER * interval ? rates(n.last, ns, dt) : null;
    }
    n.last = ns;
    n.interval = interval;
    n.seen = performance.now();
    n.gone = false;
    set('updated', new Date(ns.time).toLocaleTimeString());
    scheduleRender();
  }

  const live = () => Array.from(nodes.values()).filter((n) => !n.gone).sort((a, b) => a.id - b.id);

  // sweep marks the nodes not heard from as gone, then drops them. While
  // this page is not connected nobody is heard from: nothing is judged.
  function sweep() {
    if (client.state !== 'open') return;
    const now = performance.now();
    let changed = false;
    for (const n of nodes.values()) {
      const age = (now - n.seen) / 1000;
      if (age > DROP_AFTER * n.interval) {
        nodes.delete(n.id);
        changed = true;
      } else if (!n.gone && age > GONE_AFTER * n.interval) {
        n.gone = true;
        n.rates = null;
        changed = true;
      }
    }
    if (changed) scheduleRender();
  }

  // ---- totals over the live nodes ----
  function totals() {
    const ns = live();
    const t = {
      nodes: ns.length, connections: 0, subscriptions: 0, topics: 0, slowClosed: 0, outbound: 0, history: 0,
      p99: null, drops: {}, rates: null,
      zConns: 0, zBefore: 0, zAfter: 0 // permessage-deflate: compressing connections, bytes of compressed frames before/after
    };
    for (const n of ns) {
      const st = n.last.stats;
      t.connections += st.Connections;
      t.subscriptions += st.Subscriptions;
      t.topics += st.Topics;
      t.slowClosed += st.SlowClosed;
      t.outbound += (st.Transport || {}).OutboundBuffered || 0;
      // Nodes of one Manager report the same streams (shared memory, a
      // manager node, JetStream): the largest figure, not the sum.
      t.history = Math.max(t.history, st.HistoryBytes || 0);
      const z = (st.Transport || {}).Compression || {};
      t.zConns += z.Conns || 0;
      t.zBefore += z.FrameBytesIn || 0;
      t.zAfter += z.FrameBytesOut || 0;
      if (n.last.latency) t.p99 = Math.max(t.p99 || 0, n.last.latency.p99);
      for (const reason in n.last.drops || {}) {
        const d = t.drops[reason] || (t.drops[reason] = { total: 0, rate: 0 });
        d.total += n.last.drops[reason];
        if (n.rates) d.rate += n.rates.dropsBy[reason] || 0;
      }
      if (n.rates) {
        t.rates = t.rates || { in: 0, publishes: 0, deliveries: 0, drops: 0 };
        for (const k in t.rates) t.rates[k] += n.rates[k];
      }
    }
    return t;
  }

  // ---- charts (inline SVG) ----
  const SVG = 'http://www.w3.org/2000/svg';
  const W = 360, H = 100;

  class Chart {
    // series: [{label, cls}]; fmt formats values
    constructor(fig, series, fmt) {
      this.fig = fig;
      this.svg = fig.querySelector('svg');
      this.maxEl = fig.querySelector('.max');
      this.series = series;
      this.fmt = fmt;
      this.points = []; // arrays of numbers (or null: no data)
      this.paths = series.map((s) => {
        const p = document.createElementNS(SVG, 'path');
        p.setAttribute('class', 'line ' + s.cls);
        p.setAttribute('vector-effect', 'non-scaling-stroke');
        return p;
      });
      for (const y of [0.5, 1]) {
        const g = document.createElementNS(SVG, 'line');
        g.setAttribute('class', 'grid');
        g.setAttribute('x1', 0);
        g.setAttribute('x2', W);
        g.setAttribute('y1', H * (1 - y) + 0.5);
        g.setAttribute('y2', H * (1 - y) + 0.5);
        g.setAttribute('vector-effect', 'non-scaling-stroke');
        this.svg.append(g);
      }
      this.svg.append(...this.paths);
      this.legend = series.map((s) => {
        const el = document.createElement('span');
        el.className = 'key ' + s.cls;
        const v = document.createElement('b');
        el.append(s.label + ' ', v);
        fig.querySelector('.legend').append(el);
        return v;
      });
    }
    push(values) {
      this.points.push(values);
      if (this.points.length > HISTORY) this.points.shift();
      this.draw();
    }
    draw() {
      let max = 0;
      for (const p of this.points) if (p) for (const v of p) max = Math.max(max, v);
      max = niceCeil(max);
      const step = W / (HISTORY - 1);
      const x0 = W - (this.points.length - 1) * step;
      this.paths.forEach((path, k) => {
        let d = '', pen = false;
        this.points.forEach((p, i) => {
          if (!p) {
            pen = false;
            return;
          }
          const x = (x0 + i * step).toFixed(1), y = (H - (p[k] / max) * (H - 4) - 1).toFixed(1);
          d += (pen ? 'L' : 'M') + x + ' ' + y;
          pen = true;
        });
        path.setAttribute('d', d);
      });
      const last = this.points[this.points.length - 1];
      this.legend.forEach((el, k) => set(el, last ? this.fmt(last[k]) : '–', last ? last[k] : ''));
      set(this.maxEl, 'scale ' + this.fmt(max), max);
      this.svg.dataset.points = String(this.points.length);
    }
  }

  function niceCeil(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  const charts = {
    in: new Chart($('chart-in'), [{ label: 'msgs in/s', cls: 's0' }, { label: 'publishes/s', cls: 's1' }], fmtRate),
    deliveries: new Chart($('chart-deliveries'), [{ label: 'deliveries/s', cls: 's2' }, { label: 'drops/s', cls: 's3' }], fmtRate),
    connections: new Chart($('chart-connections'), [{ label: 'connections', cls: 's0' }, { label: 'subscriptions', cls: 's1' }], fmtInt)
  };

  // sample adds a point to the charts, once per stats interval.
  let lastSample = 0;
  function sample() {
    const ns = live();
    const interval = ns.length ? Math.min(...ns.map((n) => n.interval)) : 1;
    const now = performance.now();
    if (now - lastSample < interval * 1000 - 50) return;
    lastSample = now;
    if (client.state !== 'open') { // nothing heard: a gap
      for (const c of Object.values(charts)) c.push(null);
      return;
    }
    const t = totals();
    const r = t.rates;
    charts.in.push(r ? [r.in, r.publishes] : null);
    charts.deliveries.push(r ? [r.deliveries, r.drops] : null);
    charts.connections.push(t.nodes ? [t.connections, t.subscriptions] : null);
  }

  // ---- rendering ----
  let renderPending = false;
  function scheduleRender() {
    if (renderPending) return;
    renderPending = true;
    setTimeout(() => {
      renderPending = false;
      render();
    }, 30);
  }

  function render() {
    const t = totals();
    set('nodes-count', String(t.nodes), t.nodes);
    const any = t.nodes > 0;
    set('connections', any ? fmtInt(t.connections) : '–', any ? t.connections : '');
    set('subscriptions', any ? fmtInt(t.subscriptions) : '–', any ? t.subscriptions : '');
    set('topics-total', any ? fmtInt(t.topics) : '–', any ? t.topics : '');
    set('slow-closed', any ? fmtInt(t.slowClosed) : '–', any ? t.slowClosed : '');
    set('outbound', any ? fmtBytes(t.outbound) : '–', any ? t.outbound : '');
    set('history-bytes', any ? fmtBytes(t.history) : '–', any ? t.history : '');
    // compression: the compressed deliveries' bytes as sent over their
    // uncompressed size (data-value: that ratio, '' before any)
    const zRatio = t.zBefore > 0 ? t.zAfter / t.zBefore : null;
    set('compression', zRatio === null ? (any ? fmtInt(t.zConns) + ' conns' : '–')
      : Math.round(100 * (1 - zRatio)) + '% saved · ' + fmtBytes(t.zBefore) + ' → ' + fmtBytes(t.zAfter), zRatio === null ? '' : zRatio.toFixed(3));
    set('compression-conns', any ? fmtInt(t.zConns) : '–', any ? t.zConns : '');
    set('latency-p99', t.p99 === null ? '–' : fmtMs(t.p99) + ' ms', t.p99);
    const r = t.rates;
    for (const [id, k] of [['rate-in', 'in'], ['rate-publishes', 'publishes'], ['rate-deliveries', 'deliveries'], ['rate-drops', 'drops']]) {
      set(id, r ? fmtRate(r[k]) : '–', r ? r[k] : '');
    }
    renderNodes();
    renderDrops(t);
    renderLatency();
    if (!searching()) renderTopics(mergedTopics(), null);
  }

  function renderNodes() {
    const rows = [];
    const all = Array.from(nodes.values()).sort((a, b) => a.id - b.id);
    for (const n of all) {
      const st = n.last.stats, r = n.rates, l = n.last.latency;
      const tr = document.createElement('tr');
      tr.dataset.node = String(n.id);
      tr.dataset.state = n.gone ? 'gone' : 'live';
      if (n.gone) tr.className = 'gone';
      const id = cell('id', String(n.id));
      if (n.id === ownNode) {
        const own = document.createElement('span');
        own.className = 'own';
        own.textContent = 'this page';
        own.title = "this page's websocket is on this node";
        id.append(' ', own);
      }
      const rate = (k) => (r ? fmtRate(r[k]) : '–');
      tr.append(
        id,
        cell('state', n.gone ? 'gone' : 'live'),
        cell('num connections', fmtInt(st.Connections), st.Connections),
        cell('num subscriptions', fmtInt(st.Subscriptions), st.Subscriptions),
        cell('num topics', fmtInt(st.Topics), st.Topics),
        cell('num in', rate('in'), r ? r.in : ''),
        cell('num publishes', rate('publishes'), r ? r.publishes : ''),
        cell('num deliveries', rate('deliveries'), r ? r.deliveries : ''),
        cell('num drops', fmtInt(sumValues(n.last.drops)), sumValues(n.last.drops)),
        cell('num slow', fmtInt(st.SlowClosed), st.SlowClosed),
        cell('num outbound', fmtBytes((st.Transport || {}).OutboundBuffered || 0), (st.Transport || {}).OutboundBuffered || 0),
        cell('num p99', l ? fmtMs(l.p99) + ' ms' : '–', l ? l.p99 : '')
      );
      tr.dataset.history = String(st.HistoryBytes || 0);
      tr.title = 'node ' + n.id + ': stats every ' + n.interval + ' s, last at ' + new Date(n.last.time).toLocaleTimeString() +
        '; history ' + fmtBytes(st.HistoryBytes || 0) + ' in ' + fmtInt(st.HistoryStreams || 0) + ' streams';
      rows.push(tr);
    }
    $('nodes').tBodies[0].replaceChildren(...rows);
    const gone = all.length - live().length;
    set('nodes-summary', all.length === 0
      ? (client.state === 'open' ? 'Waiting for the nodes’ stats…' : 'Not connected.')
      : `${all.length - gone} live node${all.length - gone === 1 ? '' : 's'}` +
        (gone ? `, ${gone} gone (not heard from for ${GONE_AFTER} intervals; dropped after ${DROP_AFTER})` : '') + '.');
  }

  function renderDrops(t) {
    const rows = Object.keys(t.drops).sort().map((reason) => {
      const d = t.drops[reason];
      const tr = document.createElement('tr');
      tr.dataset.reason = reason;
      tr.append(cell('reason', reason.replace(/_/g, ' ')), cell('num total', fmtInt(d.total), d.total),
        cell('num rate', t.rates ? fmtRate(d.rate) : '–', t.rates ? d.rate : ''));
      return tr;
    });
    $('drops').tBodies[0].replaceChildren(...rows);
  }

  function renderLatency() {
    const rows = live().map((n) => {
      const l = n.last.latency;
      const tr = document.createElement('tr');
      tr.dataset.node = String(n.id);
      tr.append(cell('id', String(n.id)), ...['p50', 'p90', 'p99', 'max'].map((k) => cell('num ' + k, fmtMs(l && l[k]), l ? l[k] : '')));
      if (!l) tr.title = 'no write measured yet';
      return tr;
    });
    $('latency').tBodies[0].replaceChildren(...rows);
  }

  // ---- topics ----
  const search = $('search');
  const topSel = $('top');
  const topN = () => parseInt(topSel.value, 10) || 20;
  const searching = () => search.value.trim() !== '';

  // mergedTopics sums the live nodes' own top lists (their local counts).
  function mergedTopics() {
    const sum = new Map();
    for (const n of live()) {
      for (const t of n.last.topics || []) {
        const e = sum.get(t.topic) || { topic: t.topic, count: 0, nodes: [] };
        e.count += t.count;
        e.nodes.push(n.id);
        sum.set(t.topic, e);
      }
    }
    return Array.from(sum.values()).sort((a, b) => b.count - a.count || (a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : 0));
  }

  // renderTopics shows rows; found is null for the live merged list, or
  // {query, at} for the answer of topics.json.
  function renderTopics(list, found) {
    const all = list.length;
    list = list.slice(0, topN());
    const rows = list.map((t) => {
      const tr = document.createElement('tr');
      tr.dataset.topic = t.topic;
      const name = cell('topic', t.topic);
      name.title = t.topic;
      tr.append(name, cell('num count', fmtInt(t.count), t.count), cell('num nodes', t.nodes ? t.nodes.join(', ') : 'all'));
      return tr;
    });
    const table = $('topics');
    table.tBodies[0].replaceChildren(...rows);
    table.dataset.source = found ? 'search' : 'live';
    table.dataset.query = found ? found.query : '';
    let summary;
    if (found) {
      summary = all === 0
        ? `No topic of the cluster matches “${found.query}”.`
        : `The ${all === 1 ? 'topic' : all + ' topics'} of the whole cluster matching “${found.query}” with the most subscribers (exact counts, as of ${found.at}).`;
    } else if (all === 0) {
      summary = live().length ? 'No topic has subscribers.' : '';
    } else {
      summary = `Showing ${rows.length} of ${all} topic${all === 1 ? '' : 's'}: the nodes’ own top lists, summed. Search for exact cluster-wide counts.`;
    }
    set('topics-summary', summary);
  }

  let searchSeq = 0;
  let searchTimer = null;
  let searchAbort = null;

  // runSearch asks topics.json, and again every SEARCH_REFRESH while the
  // query stands. An answer to an older query is ignored.
  async function runSearch() {
    clearTimeout(searchTimer);
    if (searchAbort) searchAbort.abort();
    const seq = ++searchSeq;
    if (!searching()) {
      searchAbort = null;
      render();
      return;
    }
    const query = search.value.trim();
    const ctl = new AbortController();
    searchAbort = ctl;
    const params = new URLSearchParams({ q: query, top: String(topN()) });
    try {
      const resp = await fetch('topics.json?' + params, { cache: 'no-store', signal: ctl.signal });
      const body = await resp.json();
      if (seq !== searchSeq) return;
      if (!resp.ok) throw new Error((body && body.message) || 'HTTP ' + resp.status);
      renderTopics(body.topics || [], { query: body.query, at: new Date().toLocaleTimeString() });
    } catch (e) {
      if (seq !== searchSeq || e.name === 'AbortError') return;
      $('topics').tBodies[0].replaceChildren();
      $('topics').dataset.source = 'search';
      set('topics-summary', 'The search failed: ' + e.message);
    }
    if (seq === searchSeq) searchTimer = setTimeout(runSearch, SEARCH_REFRESH);
  }

  let debounce = null;
  function changed() {
    clearTimeout(debounce);
    debounce = setTimeout(() => {
      const u = new URL(location.href);
      if (searching()) u.searchParams.set('q', search.value.trim());
      else u.searchParams.delete('q');
      u.searchParams.set('top', topSel.value);
      history.replaceState(null, '', u);
      runSearch();
    }, 250);
  }

  const initial = new URLSearchParams(location.search);
  search.value = initial.get('q') || '';
  const wantTop = initial.get('top') || document.body.dataset.top || '20';
  if (![...topSel.options].some((o) => o.value === wantTop)) topSel.add(new Option(wantTop));
  topSel.value = wantTop;
  search.addEventListener('input', changed);
  topSel.addEventListener('change', changed);
  $('topic-form').addEventListener('submit', (e) => {
    e.preventDefault();
    changed();
  });

  // ---- the websocket, through firetower.js ----
  // A fresh system token before every connection attempt: a token is
  // checked only when the socket opens.
  async function tokenURL() {
    const resp = await fetch('token', { cache: 'no-store' });
    let body = null;
    try {
      body = await resp.json();
    } catch (e) { /* not JSON: reported below */ }
    if (!resp.ok || !body || typeof body.url !== 'string') {
      throw new Error('token: ' + ((body && body.message) || 'HTTP ' + resp.status));
    }
    ownNode = body.node;
    set('own-node', 'node ' + body.node);
    return body.url;
  }

  const client = new Firetower(tokenURL, { minDelay: 500, maxDelay: 5000 });
  window.dashboardClient = client;

  function showError(text) {
    const el = $('error');
    el.hidden = !text;
    set(el, text || '');
  }

  client.on('message', (topic, data) => {
    if (topic === STATS) onStats(data);
  });
  client.on('state', (state) => {
    const el = $('state');
    el.dataset.state = state;
    el.textContent = { connecting: 'connecting…', open: 'live', reconnecting: 'reconnecting…', closed: 'closed' }[state] || state;
    if (state === 'open') {
      showError('');
      // Not heard from while disconnected is not gone: the clock restarts.
      const now = performance.now();
      for (const n of nodes.values()) n.seen = now;
      subscribe();
    }
    scheduleRender();
  });
  client.on('error', (e) => {
    showError(e.code + ': ' + e.message);
    // The stats topic refused on a resubscription: the socket is of no
    // use (no system token?); start over with a new one.
    if (e.code === 'forbidden' && !client.topics.has(STATS)) restart();
  });

  let subscribing = false;
  function subscribe() {
    if (subscribing || client.topics.has(STATS)) return;
    subscribing = true;
    client.subscribe(STATS).then(() => {
      subscribing = false;
    }, (e) => {
      subscribing = false;
      if (e.code === 'connection_lost' || e.code === 'closed') return; // subscribe() again on the next open
      showError('subscribing to the stats failed: ' + e.code + ': ' + e.message);
      restart();
    });
  }

  let restartTimer = null;
  function restart() {
    if (restartTimer !== null) return;
    client.close();
    restartTimer = setTimeout(() => {
      restartTimer = null;
      client.connect().catch(() => {});
    }, 3000);
  }

  setInterval(() => {
    sweep();
    sample();
  }, 250);
  window.addEventListener('pagehide', () => client.close());
  window.addEventListener('pageshow', (e) => {
    if (e.persisted) client.connect().catch(() => {}); // back from the page cache
  });
  // Sign out (shown when the server has sessions): POST, then back to the
  // page, which shows the sign-in form.
  const signout = $('signout');
  if (signout) {
    signout.addEventListener('click', async () => {
      signout.disabled = true;
      try {
        await fetch(signout.dataset.action, { method: 'POST', cache: 'no-store' });
      } finally {
        location.replace('./');
      }
    });
  }

  client.connect().catch(() => {});
  if (searching()) runSearch();
  render();
})();
