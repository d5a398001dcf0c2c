// The wakeway console: polls the admin API it is served from and draws services, instances,
// small charts and the event log. Every action goes through the same JSON API as the CLI.
'use strict';

const POLL_MS = 500;
const HISTORY_S = 300;
const MAX_EVENTS = 300;
const TOKEN_KEY = 'wakeway-admin-token';

const state = {
  token: sessionStorage.getItem(TOKEN_KEY) || '',
  after: 0,
  cards: new Map(),
  history: new Map(),
  polling: false,
};

class Unauthorized extends Error {}

async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET') headers['Content-Type'] = 'application/json';
  if (state.token) headers.Authorization = 'Bearer ' + state.token;
  const resp = await fetch(path, {
    method,
    headers,
    body: method === 'GET' ? undefined : JSON.stringify(body || {}),
    cache: 'no-store',
    credentials: 'omit',
  });
  let data = null;
  try { data = await resp.json(); } catch (_) { /* not JSON: reported below */ }
  if (resp.status === 401) throw new Unauthorized('the admin token is missing or wrong');
  if (!resp.ok) throw new Error((data && data.error) || `${method} ${path}: ${resp.status}`);
  return data;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') node.className = v;
    else if (k.startsWith('data-')) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) node.append(c);
  return node;
}

function show(id, text, error) {
  const s = document.getElementById(id);
  s.textContent = text;
  s.classList.toggle('error', !!error);
}

// The connection's state, refreshed by every poll.
const setStatus = (text, error) => show('status', text, error);
// The outcome of the last button pressed; stays until the next one.
const setNote = (text, error) => show('note', text, error);

function count(instances, st) {
  return instances.filter((i) => i.state === st).length;
}

function card(name) {
  let c = state.cards.get(name);
  if (c) return c;
  const field = (label, key) => {
    const dd = el('dd', { 'data-field': key }, '0');
    return { node: el('div', {}, el('dt', {}, label), dd), dd };
  };
  const fields = {};
  const dl = el('dl', { class: 'counts' });
  for (const [label, key] of [
    ['desired', 'desired'], ['ready', 'ready'], ['starting', 'starting'],
    ['draining', 'draining'], ['in flight', 'in_flight'], ['queued', 'queued'],
  ]) {
    const f = field(label, key);
    fields[key] = f.dd;
    dl.append(f.node);
  }
  const chart = (label) => {
    const canvas = el('canvas', { width: 300, height: 56 });
    const caption = el('span', {}, label);
    return { node: el('div', { class: 'chart' }, caption, canvas), canvas, caption, label };
  };
  const inflightChart = chart('in flight');
  const rateChart = chart('requests/s');
  const badge = el('span', { class: 'badge' });
  const revision = el('span', { class: 'muted' });
  const hosts = el('div', { class: 'muted' });
  const tbody = el('tbody');
  const table = el('table', {},
    el('thead', {}, el('tr', {}, ...['instance', 'state', 'pid', 'in flight', 'since']
      .map((h) => el('th', {}, h)))),
    tbody);
  const button = (label, action) => el('button', {
    type: 'button', 'data-action': action, 'data-service': name,
    onclick: () => act(name, action),
  }, label);
  const pause = button('Pause', 'pause');
  const actions = el('div', { class: 'actions' },
    button('Deploy again', 'deploy'), button('Rollback', 'rollback'), pause);
  const node = el('article', { class: 'svc', 'data-service': name },
    el('div', { class: 'head' }, el('h2', {}, name), badge, revision),
    hosts, dl,
    el('div', { class: 'charts' }, inflightChart.node, rateChart.node),
    el('div', { class: 'table' }, table),
    actions);
  c = { node, fields, badge, revision, hosts, tbody, pause, inflightChart, rateChart };
  state.cards.set(name, c);
  document.getElementById('services').append(node);
  return c;
}

function record(svc, now) {
  let h = state.history.get(svc.name);
  if (!h) { h = []; state.history.set(svc.name, h); }
  const last = h[h.length - 1];
  const rate = last && now > last.t ? Math.max(0, (svc.requests - last.requests) * 1000 / (now - last.t)) : 0;
  h.push({ t: now, requests: svc.requests, inFlight: svc.in_flight, rate });
  while (h.length && now - h[0].t > HISTORY_S * 1000) h.shift();
  return h;
}

function draw(chart, points, key) {
  const { canvas } = chart;
  const ctx = canvas.getContext('2d');
  const w = canvas.width;
  const hgt = canvas.height;
  ctx.clearRect(0, 0, w, hgt);
  const max = Math.max(1, ...points.map((p) => p[key]));
  const latest = points.length ? points[points.length - 1][key] : 0;
  chart.caption.textContent = `${chart.label}: ${latest.toFixed(key === 'rate' ? 1 : 0)} (max ${max.toFixed(key === 'rate' ? 1 : 0)})`;
  if (points.length < 2) return;
  const t0 = points[points.length - 1].t - HISTORY_S * 1000;
  ctx.strokeStyle = getComputedStyle(document.documentElement).getPropertyValue('--accent') || '#2e5bff';
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  points.forEach((p, i) => {
    const x = ((p.t - t0) / (HISTORY_S * 1000)) * w;
    const y = hgt - 2 - (p[key] / max) * (hgt - 4);
    if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
  });
  ctx.stroke();
}

function render(services) {
  const now = Date.now();
  const seen = new Set();
  for (const svc of services) {
    seen.add(svc.name);
    const c = card(svc.name);
    const inst = svc.instances || [];
    const ready = count(inst, 'ready');
    const values = {
      desired: svc.desired, ready, starting: count(inst, 'starting'),
      draining: count(inst, 'draining'), in_flight: svc.in_flight, queued: svc.queued,
    };
    for (const [k, v] of Object.entries(values)) c.fields[k].textContent = String(v);
    const st = svc.paused ? 'paused' : (inst.length ? 'running' : 'idle');
    c.badge.textContent = st;
    c.badge.className = 'badge ' + st;
    c.node.dataset.state = st;
    c.revision.textContent = svc.revision ? `${svc.revision} · ${svc.runtime}` : svc.runtime;
    c.hosts.textContent = (svc.hosts || []).join(', ');
    c.pause.textContent = svc.paused ? 'Resume' : 'Pause';
    c.pause.dataset.action = svc.paused ? 'resume' : 'pause';
    const rows = inst.map((i) => el('tr', { 'data-instance': i.id, 'data-state': i.state },
      el('td', {}, i.id), el('td', {}, i.state), el('td', {}, i.pid == null ? '–' : String(i.pid)),
      el('td', {}, String(i.in_flight)), el('td', {}, (i.started_at || '').replace('T', ' ').replace(/\.\d+Z$/, 'Z'))));
    if (!rows.length) rows.push(el('tr', {}, el('td', { colSpan: 5, class: 'muted' }, 'no instance running')));
    c.tbody.replaceChildren(...rows);
    const h = record(svc, now);
    draw(c.inflightChart, h, 'inFlight');
    draw(c.rateChart, h, 'rate');
  }
  for (const [name, c] of state.cards) {
    if (!seen.has(name)) { c.node.remove(); state.cards.delete(name); state.history.delete(name); }
  }
}

const BASE_KEYS = new Set(['seq', 'time', 'service', 'kind', 'message']);

function addEvents(events) {
  const list = document.getElementById('events');
  for (const e of events) {
    state.after = Math.max(state.after, e.seq);
    const inputs = Object.entries(e)
      .filter(([k]) => !BASE_KEYS.has(k))
      .map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : v}`)
      .join('  ');
    const item = el('li', { 'data-kind': e.kind },
      el('span', { class: 'muted' }, (e.time || '').slice(11, 19)),
      el('span', { class: 'kind' }, `${e.service} ${e.kind}`),
      e.message || '');
    if (inputs) item.append(el('span', { class: 'inputs' }, inputs));
    list.prepend(item);
  }
  while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
}

async function act(name, action) {
  const paths = {
    deploy: `/v1/services/${encodeURIComponent(name)}/deployments`,
    rollback: `/v1/services/${encodeURIComponent(name)}/rollback`,
    pause: `/v1/services/${encodeURIComponent(name)}/pause`,
    resume: `/v1/services/${encodeURIComponent(name)}/resume`,
  };
  const button = state.cards.get(name)?.node.querySelector(`[data-action="${action}"]`);
  if (button) button.disabled = true;
  try {
    const result = await api('POST', paths[action], {});
    const what = {
      deploy: `deployment ${result && result.id} of ${name} began`,
      rollback: `rollback of ${name} began`,
      pause: `${name} is paused`,
      resume: `${name} is resumed`,
    }[action];
    setNote(what);
    await poll();
  } catch (e) {
    if (e instanceof Unauthorized) handle(e); else setNote(e.message, true);
  } finally {
    if (button) button.disabled = false;
  }
}

function handle(e) {
  if (e instanceof Unauthorized) {
    document.getElementById('login').hidden = false;
    setStatus(e.message, true);
  } else {
    setStatus(`disconnected: ${e.message}`, true);
  }
}

async function poll() {
  const [services, events] = await Promise.all([
    api('GET', '/v1/services'),
    api('GET', `/v1/events?after=${state.after}`),
  ]);
  document.getElementById('login').hidden = true;
  render(services);
  addEvents(events);
}

async function loop() {
  if (state.polling) return;
  state.polling = true;
  for (;;) {
    try {
      await poll();
      setStatus(`live · ${new Date().toLocaleTimeString()}`);
    } catch (e) {
      handle(e);
      if (e instanceof Unauthorized) { state.polling = false; return; }
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

document.getElementById('login').addEventListener('submit', (ev) => {
  ev.preventDefault();
  state.token = document.getElementById('token').value.trim();
  sessionStorage.setItem(TOKEN_KEY, state.token);
  loop();
});

loop();
