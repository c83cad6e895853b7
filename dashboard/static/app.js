// firetower dashboard: reads the server-sent snapshot stream and draws it.
// Plain JS, no dependencies: the charts are drawn on <canvas> by hand.
(function () {
  'use strict';

  const body = document.body;
  const eventsURL = body.dataset.events;
  const HISTORY = 180; // points kept per chart (3 minutes at one per second)

  const $ = (id) => document.getElementById(id);

  // ---- formatting ----
  const intFmt = new Intl.NumberFormat('en-US');
  function fmtInt(v) {
    return intFmt.format(v);
  }
  function fmtRate(v) {
    if (!v) return '0';
    if (v < 10 && !Number.isInteger(v)) return v.toFixed(1);
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
  function setText(id, text, value) {
    const el = $(id);
    if (!el) return;
    if (el.textContent !== text) el.textContent = text;
    if (value !== undefined) el.dataset.value = String(value);
  }

  // ---- charts ----
  const palette = {
    ink: '#1d2330', muted: '#8a919e', grid: '#e3e5ea',
    a: '#e8590c', b: '#1c7ed6', c: '#2b8a3e', d: '#c92a2a', e: '#7048e8'
  };

  class Chart {
    // series: [{label, color, get(snapshot) -> number}]
    constructor(canvas, series, fmt) {
      this.canvas = canvas;
      this.series = series;
      this.fmt = fmt || fmtRate;
      this.points = []; // arrays of numbers, one per series
      this.last = null;
    }
    push(s) {
      this.last = this.series.map((sr) => sr.get(s) || 0);
      this.points.push(this.last);
      if (this.points.length > HISTORY) this.points.shift();
      this.draw();
    }
    draw() {
      const c = this.canvas;
      const dpr = window.devicePixelRatio || 1;
      const w = Math.max(120, c.clientWidth || c.width);
      const h = Math.max(60, c.clientHeight || c.height);
      if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
        c.width = Math.round(w * dpr);
        c.height = Math.round(h * dpr);
      }
      const g = c.getContext('2d');
      g.setTransform(dpr, 0, 0, dpr, 0, 0);
      g.clearRect(0, 0, w, h);
      g.font = '11px system-ui, sans-serif';
      g.textBaseline = 'top';

      let max = 0;
      for (const p of this.points) for (const v of p) max = Math.max(max, v);
      max = niceCeil(max);
      const top = 18, bottom = h - 4, left = 4, right = w - 4;
      const y = (v) => bottom - (v / max) * (bottom - top);

      // grid and scale
      g.strokeStyle = palette.grid;
      g.lineWidth = 1;
      g.beginPath();
      for (const f of [0, 0.5, 1]) {
        const yy = Math.round(y(max * f)) + 0.5;
        g.moveTo(left, yy);
        g.lineTo(right, yy);
      }
      g.stroke();
      g.fillStyle = palette.muted;
      g.textAlign = 'right';
      g.fillText(this.fmt(max), right, top - 14 > 0 ? top - 14 : 0);

      // lines, newest point at the right edge
      const step = (right - left) / (HISTORY - 1);
      this.series.forEach((sr, k) => {
        if (this.points.length === 0) return;
        g.strokeStyle = sr.color;
        g.lineWidth = 1.5;
        g.beginPath();
        const x0 = right - (this.points.length - 1) * step;
        this.points.forEach((p, i) => {
          const xx = x0 + i * step, yy = y(p[k]);
          if (i === 0) g.moveTo(xx, yy);
          else g.lineTo(xx, yy);
        });
        g.stroke();
      });

      // legend with the latest values
      g.textAlign = 'left';
      let x = left;
      this.series.forEach((sr, k) => {
        const label = sr.label + ' ' + (this.last ? this.fmt(this.last[k]) : '–');
        g.fillStyle = sr.color;
        g.fillRect(x, 3, 8, 8);
        g.fillStyle = palette.ink;
        g.fillText(label, x + 11, 1);
        x += g.measureText(label).width + 22;
      });
    }
  }

  function niceCeil(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  const charts = {
    connections: new Chart($('chart-connections'), [
      { label: 'connections', color: palette.a, get: (s) => s.stats.Connections },
      { label: 'subscriptions', color: palette.b, get: (s) => s.stats.Subscriptions }
    ], fmtInt),
    messages: new Chart($('chart-messages'), [
      { label: 'in', color: palette.a, get: (s) => s.rates.messages_in },
      { label: 'publishes', color: palette.b, get: (s) => s.rates.publishes }
    ]),
    deliveries: new Chart($('chart-deliveries'), [
      { label: 'deliveries', color: palette.c, get: (s) => s.rates.deliveries },
      { label: 'writes', color: palette.e, get: (s) => s.rates.writes }
    ]),
    drops: new Chart($('chart-drops'), [
      { label: 'read queue full', color: palette.d, get: (s) => s.rates.read_dropped },
      { label: 'slow consumer', color: palette.a, get: (s) => s.rates.slow_dropped }
    ])
  };
  window.addEventListener('resize', () => Object.values(charts).forEach((c) => c.draw()));
  Object.values(charts).forEach((c) => c.draw());

  // ---- rendering a snapshot ----
  function render(s) {
    const st = s.stats, tr = st.Transport || {};
    setText('node-id', String(s.node_id));
    setText('updated', new Date(s.time).toLocaleTimeString());

    setText('stat-connections', fmtInt(st.Connections), st.Connections);
    setText('stat-subscriptions', fmtInt(st.Subscriptions), st.Subscriptions);
    setText('stat-topics', fmtInt(st.Topics), st.Topics);

    setText('stat-messages-in', fmtInt(st.MessagesIn), st.MessagesIn);
    setText('stat-publishes', fmtInt(st.Publishes), st.Publishes);
    setText('stat-deliveries', fmtInt(st.Deliveries), st.Deliveries);
    setText('stat-errors', fmtInt(st.Errors), st.Errors);
    setText('stat-drops-read', fmtInt(s.drops.read_queue_full), s.drops.read_queue_full);
    setText('stat-drops-slow', fmtInt(s.drops.slow_consumer), s.drops.slow_consumer);
    setText('stat-slow-closed', fmtInt(st.SlowClosed), st.SlowClosed);
    setText('stat-flood-closed', fmtInt(st.FloodClosed), st.FloodClosed);
    setText('stat-hook-panics', fmtInt(st.HookPanics), st.HookPanics);
    setText('stat-refused', fmtInt(st.RefusedOrigin) + ' / ' + fmtInt(st.RefusedLimit));
    setText('stat-remote', fmtInt(st.RemoteDeliveries), st.RemoteDeliveries);
    setText('stat-remote-failed', fmtInt(st.RemotePublishFailed), st.RemotePublishFailed);
    setText('stat-upgrades', fmtInt(tr.Upgraded || 0) + ' / ' + fmtInt(tr.Rejected || 0));
    setText('stat-writes', fmtInt(tr.Writes || 0), tr.Writes || 0);
    setText('stat-bytes-out', fmtBytes(tr.BytesOut || 0), tr.BytesOut || 0);
    setText('stat-closes', fmtInt(tr.IdleClosed || 0) + ' / ' + fmtInt(tr.ProtocolClose || 0));
    const l = s.latency;
    setText('latency', l ? `p50 ${l.p50} ms · p90 ${l.p90} ms · p99 ${l.p99} ms · max ${l.max} ms` : 'not measured by this server');

    if (s.interval > 0) { // the first snapshot of a stream has no rates
      const r = s.rates;
      setText('rate-messages-in', fmtRate(r.messages_in), r.messages_in);
      setText('rate-publishes', fmtRate(r.publishes), r.publishes);
      setText('rate-deliveries', fmtRate(r.deliveries), r.deliveries);
      setText('rate-bytes-out', fmtBytes(r.bytes_out) + '/s', r.bytes_out);
      const drops = r.read_dropped + r.slow_dropped;
      setText('rate-drops', fmtRate(drops), drops);
      charts.messages.push(s);
      charts.deliveries.push(s);
      charts.drops.push(s);
    }
    charts.connections.push(s);
    renderTopics(s);
  }

  function renderTopics(s) {
    const tbody = document.querySelector('#topics tbody');
    const rows = [];
    for (const t of s.topics) {
      const row = document.createElement('tr');
      row.dataset.topic = t.topic;
      const name = document.createElement('td');
      name.className = 'topic';
      name.textContent = t.topic;
      name.title = t.topic;
      const local = document.createElement('td');
      local.className = 'num local';
      local.textContent = fmtInt(t.local);
      const count = document.createElement('td');
      count.className = 'num count';
      count.textContent = t.count < 0 ? '?' : fmtInt(t.count);
      if (t.count < 0) count.title = 'the cluster count could not be had';
      row.append(name, local, count);
      rows.push(row);
    }
    tbody.replaceChildren(...rows);
    let summary;
    if (s.topics_matched === 0) {
      summary = s.query ? `No topic matches “${s.query}”.` : 'No topic has subscribers on this node.';
    } else {
      summary = `Showing ${s.topics.length} of ${fmtInt(s.topics_matched)} topic${s.topics_matched === 1 ? '' : 's'}` +
        (s.query ? ` matching “${s.query}”` : '') + ', most local subscribers first.';
    }
    setText('topics-summary', summary);
  }

  // ---- the event stream ----
  const search = $('topic-search');
  const topSel = $('topic-top');
  const initial = new URLSearchParams(location.search);
  search.value = initial.get('q') || '';
  const wantTop = initial.get('top') || body.dataset.top || '20';
  if (![...topSel.options].some((o) => o.value === wantTop)) topSel.add(new Option(wantTop));
  topSel.value = wantTop;

  let es = null;
  let retryTimer = null;

  function setState(state) {
    const el = $('feed-state');
    el.dataset.state = state;
    el.textContent = state;
  }

  function connect() {
    clearTimeout(retryTimer);
    if (es) es.close();
    const q = new URLSearchParams();
    if (search.value.trim()) q.set('q', search.value.trim());
    q.set('top', topSel.value);
    setState('connecting');
    const src = new EventSource(eventsURL + '?' + q.toString());
    es = src;
    src.addEventListener('snapshot', (e) => {
      if (src !== es) return;
      setState('live');
      try {
        render(JSON.parse(e.data));
      } catch (err) {
        console.error('dashboard: bad snapshot', err);
      }
    });
    src.onerror = () => {
      if (src !== es) return;
      if (src.readyState === EventSource.CLOSED) {
        // the server refused the stream: try again later
        setState('offline');
        retryTimer = setTimeout(connect, 3000 + Math.random() * 2000);
      } else {
        setState('reconnecting');
      }
    };
  }

  let debounce = null;
  function changed() {
    clearTimeout(debounce);
    debounce = setTimeout(() => {
      const u = new URL(location.href);
      if (search.value.trim()) u.searchParams.set('q', search.value.trim());
      else u.searchParams.delete('q');
      u.searchParams.set('top', topSel.value);
      history.replaceState(null, '', u);
      connect();
    }, 250);
  }
  search.addEventListener('input', changed);
  topSel.addEventListener('change', changed);
  $('topic-form').addEventListener('submit', (e) => {
    e.preventDefault();
    changed();
  });
  window.addEventListener('pagehide', () => es && es.close());

  connect();
})();
