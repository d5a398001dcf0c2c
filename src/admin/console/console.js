// The wakeway console: polls the admin API it is served from and draws each service (its state,
// the history wakeway keeps of it, revisions and traffic, deployments, output and requests) and
// the event log. Every action goes through the same JSON API as the CLI.

import { Unauthorized, api, el, servicePath, setNote, setStatus, setToken, table, tokenFromFragment } from './page.js';
import { fields } from './format.js';
import { makeCard } from './card.js';

const POLL_MS = 1000;
const MAX_EVENTS = 300;
const OUTPUT_LINES = 50;
const ACCESS_LINES = 50;
// How many steps each range holds, as the API keeps them; a chart spans what has been kept,
// at least MIN_SLOTS steps, so a young wakeway's charts are not a sliver at the right edge.
const SLOTS = { '10m': 600, '1h': 360 };
const MIN_SLOTS = 60;

const state = {
  after: 0,
  range: '10m',
  services: new Map(),
  polling: false,
  // Whether this wakeway is a cluster replica (`GET /v1/cluster` answers); `null`: not asked.
  clustered: null,
};

// One service's card and what the page has read of it so far.
function entry(name) {
  let s = state.services.get(name);
  if (s) return s;
  s = {
    card: makeCard(name, { act, filter }),
    points: [],
    revisions: new Map(),
    historyAfter: 0,
    outputAfter: 0,
    outputLines: [],
    accessAfter: 0,
    accessLines: [],
    accessFilter: '',
    failedOutput: new Map(),
  };
  state.services.set(name, s);
  return s;
}

function keepLast(list, more, n) {
  const all = list.concat(more);
  return all.slice(Math.max(0, all.length - n));
}

// Adds the steps after the last one read, and keeps the range's width.
function addHistory(s, h) {
  const slots = SLOTS[state.range];
  s.points = keepLast(s.points, h.points || [], slots);
  for (const r of h.revisions || []) {
    s.revisions.set(r.revision, keepLast(s.revisions.get(r.revision) || [], r.points, slots));
  }
  const newest = s.points[s.points.length - 1];
  if (newest) s.historyAfter = newest.t;
}

async function refresh(svc) {
  const s = entry(svc.name);
  const path = (rest) => servicePath(svc.name, rest);
  const [history, traffic, deployments, output, access] = await Promise.all([
    api('GET', path(`/history?range=${state.range}&after=${s.historyAfter}`)),
    api('GET', path('/traffic')),
    api('GET', path('/deployments')),
    api('GET', path(`/logs?after=${s.outputAfter}&tail=${OUTPUT_LINES}`)),
    api('GET', path(`/access?after=${s.accessAfter}&tail=${ACCESS_LINES}&status=${encodeURIComponent(s.accessFilter)}`)),
  ]);
  addHistory(s, history);
  s.outputLines = keepLast(s.outputLines, output, OUTPUT_LINES);
  if (output.length) s.outputAfter = output[output.length - 1].seq;
  s.accessLines = keepLast(s.accessLines, access.lines, ACCESS_LINES);
  if (access.lines.length) s.accessAfter = access.lines[access.lines.length - 1].seq;
  // What a failed deployment's revision printed last: read once, kept with the deployment.
  const failed = deployments.filter((d) => d.state === 'failed' && !s.failedOutput.has(d.id));
  await Promise.all(failed.map(async (d) => {
    const lines = await api('GET', path(`/logs?revision=${encodeURIComponent(d.revision)}&tail=3`));
    s.failedOutput.set(d.id, lines);
  }));
  s.card.update({
    svc,
    points: s.points,
    slots: Math.max(MIN_SLOTS, s.points.length),
    revisions: s.revisions,
    traffic,
    deployments,
    output: s.failedOutput,
    outputLines: s.outputLines,
    access: { mode: access.access_log, lines: s.accessLines },
  });
}

const BASE_KEYS = new Set(['seq', 'time', 'service', 'kind', 'level', 'message']);

function addEvents(events) {
  const list = document.getElementById('events');
  for (const e of events) {
    state.after = Math.max(state.after, e.seq);
    const inputs = fields(e, BASE_KEYS);
    const item = el('li', { 'data-kind': e.kind, 'data-level': e.level },
      el('span', { class: 'muted' }, (e.time || '').slice(11, 19)),
      el('span', { class: 'kind' }, `${e.service} ${e.kind}`),
      e.message || '');
    if (inputs) item.append(el('span', { class: 'inputs' }, inputs));
    list.prepend(item);
  }
  while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
}

const SENTENCES = {
  deploy: (n, r) => `deployment ${r && r.id} of ${n} began`,
  rollback: (n) => `rollback of ${n} began`,
  pause: (n) => `${n} is paused`,
  resume: (n) => `${n} is resumed`,
  traffic: (n, r) => `traffic of ${n}: ${r.traffic.map((t) => `${t.revision} ${t.percent}%`).join(', ')}`,
  promote: (n, r) => `rollout of ${r.revision} (${n}) began at ${r.steps[0]}%`,
};

async function act(name, action, body) {
  const calls = {
    deploy: ['POST', '/deployments'],
    rollback: ['POST', '/rollback'],
    pause: ['POST', '/pause'],
    resume: ['POST', '/resume'],
    traffic: ['PUT', '/traffic'],
    promote: ['POST', '/promote'],
  };
  const [method, rest] = calls[action];
  const card = state.services.get(name);
  const button = card && card.card.node.querySelector(`[data-action="${action}"]`);
  if (button) button.disabled = true;
  try {
    const result = await api(method, servicePath(name, rest), body || {});
    setNote(SENTENCES[action](name, result));
    await poll();
  } catch (e) {
    if (e instanceof Unauthorized) handle(e); else setNote(e.message, true);
  } finally {
    if (button) button.disabled = false;
  }
}

function filter(name, status) {
  const s = state.services.get(name);
  if (!s) return;
  s.accessFilter = status;
  s.accessAfter = 0;
  s.accessLines = [];
  poll().catch(handle);
}

function setRange(range) {
  state.range = range;
  for (const s of state.services.values()) {
    s.points = [];
    s.revisions = new Map();
    s.historyAfter = 0;
  }
  for (const b of document.querySelectorAll('[data-range]')) {
    b.setAttribute('aria-pressed', String(b.dataset.range === range));
  }
  poll().catch(handle);
}

function handle(e) {
  if (e instanceof Unauthorized) {
    document.getElementById('login').hidden = false;
    setStatus(e.message, true);
  } else {
    setStatus(`disconnected: ${e.message}`, true);
  }
}

// A cluster replica: this replica, who leads, and each member with when it was last heard
// from and its share of the requests served (as the leader last pulled them).
async function refreshCluster() {
  if (state.clustered === false) return;
  if (state.clustered === null) {
    // `/healthz` names the cluster in a replica: a wakeway that runs alone is not asked for a
    // view it does not have (a 404 would show as an error in the browser's console).
    const health = await fetch('/healthz', { cache: 'no-store', credentials: 'omit' })
      .then((r) => (r.ok ? r.text() : ''))
      .catch(() => '');
    if (!health.includes('\ncluster: ')) {
      state.clustered = false;
      return;
    }
  }
  let view;
  try {
    view = await api('GET', '/v1/cluster');
  } catch (e) {
    if (e instanceof Unauthorized) throw e;
    // A wakeway that runs alone answers 404 and always will.
    if (state.clustered === null) state.clustered = false;
    return;
  }
  state.clustered = true;
  document.getElementById('cluster').hidden = false;
  const leads = view.leader ? `${view.leader} leads` : 'no leader: scaling and deploys paused';
  const etcd = view.etcd_reachable ? '' : ' · etcd unreachable';
  document.getElementById('cluster-summary').textContent = `this replica: ${view.name} · ${leads}${etcd}`;
  const rows = view.members.map((m) => el('tr', { 'data-member': m.name },
    el('td', {}, m.name + (m.name === view.name ? ' (this one)' : '')),
    el('td', {}, m.leader ? 'leader' : 'follower'),
    el('td', {}, `${(m.last_seen_ms / 1000).toFixed(1)} s ago`),
    el('td', {}, `${Math.round(m.traffic_share * 100)}%`)));
  document.getElementById('cluster-members').replaceChildren(
    table(['member', 'role', 'last seen', 'share of traffic'], rows, 'no member listed'));
}

// One poll at a time (the loop's and a button's), so nothing read is added twice.
let chain = Promise.resolve();
function poll() {
  const next = chain.then(pollOnce);
  chain = next.catch(() => {});
  return next;
}

async function pollOnce() {
  const [services, events] = await Promise.all([
    api('GET', '/v1/services'),
    api('GET', `/v1/events?after=${state.after}`),
    refreshCluster(),
  ]);
  document.getElementById('login').hidden = true;
  await Promise.all(services.map(refresh));
  // Shown once drawn, in the API's order; a card already in place is not moved (moving one
  // would reset its scrolled panels).
  const list = document.getElementById('services');
  services.forEach((svc, i) => {
    const card = state.services.get(svc.name).card.node;
    if (list.children[i] !== card) list.insertBefore(card, list.children[i] || null);
  });
  const seen = new Set(services.map((s) => s.name));
  for (const [name, s] of state.services) {
    if (!seen.has(name)) { s.card.node.remove(); state.services.delete(name); }
  }
  addEvents(events);
}

async function loop() {
  if (state.polling) return;
  state.polling = true;
  for (;;) {
    try {
      await poll();
      setStatus(`live · ${new Date().toLocaleTimeString([], { hour12: false })}`);
    } catch (e) {
      handle(e);
      if (e instanceof Unauthorized) { state.polling = false; return; }
    }
    await new Promise((r) => { setTimeout(r, POLL_MS); });
  }
}

document.getElementById('login').addEventListener('submit', (ev) => {
  ev.preventDefault();
  setToken(document.getElementById('token').value.trim());
  loop();
});
for (const b of document.querySelectorAll('[data-range]')) {
  b.addEventListener('click', () => setRange(b.dataset.range));
}

tokenFromFragment();
loop();
