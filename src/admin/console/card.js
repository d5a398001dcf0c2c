// A service's card: its state, the recent figures, the charts of its history, the buttons (with
// the traffic and promote forms) and the panels below.

import { el } from './page.js';
import { chart } from './chart.js';
import { millis, num, percent, perSecond } from './format.js';
import { accessPanel, deploymentsPanel, instancesPanel, outputPanel, revisionsPanel } from './panels.js';

const count = (v) => num(v);
const errors = (cls) => (p) => (p.error_percent ? p.error_percent[cls] : null);
const state = (s) => (p) => (p.instances && p.instances[s]) || 0;

// What each chart draws; the `key` names it in the page (`svg[data-chart=KEY]`).
const CHARTS = [
  ['requests', 'requests/s', [{ cls: 'a', value: (p) => p.requests_per_second, format: perSecond }], 1],
  ['errors', 'errors', [
    { name: '4xx', cls: 'warn', value: errors('4xx'), format: percent },
    { name: '5xx', cls: 'bad', value: errors('5xx'), format: percent },
  ], 5],
  ['latency', 'latency', [
    { name: 'p50', cls: 'a', value: (p) => p.p50_ms, format: millis },
    { name: 'p99', cls: 'b', value: (p) => p.p99_ms, format: millis },
  ], 1],
  ['in_flight', 'in flight', [
    { cls: 'a', value: (p) => p.in_flight, format: count },
    { name: 'queued', cls: 'warn', value: (p) => p.queued, format: count },
  ], 1],
  ['instances', 'instances', [
    { name: 'ready', cls: 'ok', value: state('ready'), format: count },
    { name: 'starting', cls: 'b', value: state('starting'), format: count },
    { name: 'frozen', cls: 'muted-line', value: state('frozen'), format: count },
  ], 1],
  ['cold_starts', 'cold starts', [{ cls: 'b', value: (p) => p.cold_starts, format: count }], 1],
];

const STATS = [
  ['requests/s', 'rps'], ['4xx', 'e4'], ['5xx', 'e5'], ['p50', 'p50'], ['p99', 'p99'],
  ['in flight', 'in_flight'], ['queued', 'queued'], ['desired', 'desired'], ['ready', 'ready'],
  ['starting', 'starting'],
];

function field(label, value) {
  const input = el('input', { value: value == null ? '' : String(value) });
  return { input, node: el('label', { class: 'field' }, el('span', {}, label), input) };
}

// `hooks.act(name, action, body)` runs a button's call; `hooks.filter(name, status)` changes
// the requests panel's filter.
export function makeCard(name, hooks) {
  const badge = el('span', { class: 'badge' });
  const revision = el('span', { class: 'muted' });
  const hosts = el('div', { class: 'muted' });
  const reason = el('p', { class: 'reason', hidden: true });
  const stats = {};
  const dl = el('dl', { class: 'counts' }, ...STATS.map(([label, key]) => {
    stats[key] = el('dd', { 'data-field': key }, '–');
    return el('div', {}, el('dt', {}, label), stats[key]);
  }));
  const charts = CHARTS.map(([key, label, series, floor]) => chart(key, label, series, floor));
  const form = el('form', { class: 'form', hidden: true });
  let last = null;
  const button = (label, action, onclick) => el('button', {
    type: 'button', 'data-action': action, 'data-service': name, onclick,
  }, label);
  const pause = button('Pause', 'pause', () => hooks.act(name, pause.dataset.action));
  const actions = el('div', { class: 'actions' },
    button('Deploy again', 'deploy', () => hooks.act(name, 'deploy')),
    button('Rollback', 'rollback', () => hooks.act(name, 'rollback')),
    pause,
    button('Traffic…', 'traffic', () => openForm(trafficForm())),
    button('Promote…', 'promote', () => openForm(promoteForm())));
  const panels = {
    revisions: revisionsPanel(),
    deployments: deploymentsPanel(),
    instances: instancesPanel(),
    output: outputPanel(),
    access: accessPanel((status) => hooks.filter(name, status)),
  };
  const node = el('article', { class: 'svc', 'data-service': name },
    el('div', { class: 'head' }, el('h2', {}, name), badge, revision),
    hosts, reason, dl,
    el('div', { class: 'charts' }, ...charts.map((c) => c.node)),
    actions, form,
    el('div', { class: 'panels' }, panels.revisions.node, panels.deployments.node,
      panels.instances.node),
    el('div', { class: 'panels logs' }, panels.output.node, panels.access.node));

  function openForm(parts) {
    form.replaceChildren(...parts.fields,
      el('div', { class: 'actions' },
        el('button', { type: 'submit' }, parts.submit),
        el('button', { type: 'button', onclick: () => { form.hidden = true; } }, 'Cancel')));
    form.onsubmit = (ev) => {
      ev.preventDefault();
      form.hidden = true;
      hooks.act(name, parts.action, parts.body());
    };
    form.hidden = false;
  }

  // One row per revision in the traffic (and the latest), its percent and its tag.
  function trafficForm() {
    const t = (last && last.traffic) || { traffic: [] };
    const revs = t.traffic.map((s) => ({ revision: s.revision, percent: s.percent, tag: (s.tags || [])[0] }));
    if (t.latest && !revs.some((r) => r.revision === t.latest)) revs.push({ revision: t.latest, percent: 0 });
    const rows = revs.map((r) => {
      const share = field(`${r.revision} %`, r.percent);
      share.input.setAttribute('data-share', r.revision);
      share.input.type = 'number';
      share.input.min = '0';
      share.input.max = '100';
      const tag = field('tag', r.tag);
      tag.input.setAttribute('data-tag-of', r.revision);
      return { r, share, tag, node: el('div', { class: 'row' }, share.node, tag.node) };
    });
    return {
      action: 'traffic',
      submit: 'Set traffic',
      fields: [el('p', { class: 'muted' }, 'Shares sum to 100; a tag gives a revision its own host name.'),
        ...rows.map((x) => x.node)],
      body: () => ({
        traffic: rows
          .map(({ r, share, tag }) => ({
            revision: r.revision,
            percent: Number(share.input.value) || 0,
            tag: tag.input.value.trim() || undefined,
          }))
          .filter((e) => e.percent > 0 || e.tag),
      }),
    };
  }

  function promoteForm() {
    const t = (last && last.traffic) || { traffic: [] };
    const names = [...new Set([t.latest, ...t.traffic.map((s) => s.revision)].filter(Boolean))];
    const rev = el('select', { 'aria-label': 'revision' }, ...names.map((n) => el('option', { value: n }, n)));
    const steps = field('steps (%)', '10,50,100');
    steps.input.setAttribute('data-field', 'steps');
    const every = field('every', '1m');
    every.input.setAttribute('data-field', 'interval');
    return {
      action: 'promote',
      submit: 'Start rollout',
      fields: [el('label', { class: 'field' }, el('span', {}, 'revision'), rev), steps.node, every.node],
      body: () => ({
        revision: rev.value,
        steps: steps.input.value.split(',').map((s) => Number(s.trim())).filter((n) => n > 0),
        interval: every.input.value.trim() || '1m',
      }),
    };
  }

  // `d`: { svc, points, slots, revisions (Map), traffic, deployments, output, outputLines,
  // access }.
  function update(d) {
    last = d;
    const { svc } = d;
    const inst = svc.instances || [];
    badge.textContent = svc.state;
    badge.className = `badge ${svc.state}`;
    node.dataset.state = svc.state;
    reason.hidden = !svc.state_reason;
    reason.textContent = svc.state_reason || '';
    revision.textContent = svc.revision ? `${svc.revision} · ${svc.runtime}` : svc.runtime;
    hosts.textContent = (svc.hosts || []).join(', ');
    pause.textContent = svc.paused ? 'Resume' : 'Pause';
    pause.dataset.action = svc.paused ? 'resume' : 'pause';
    const r = svc.recent || {};
    const values = {
      rps: perSecond(r.requests_per_second),
      e4: percent(r.error_percent && r.error_percent['4xx']),
      e5: percent(r.error_percent && r.error_percent['5xx']),
      p50: millis(r.p50_ms),
      p99: millis(r.p99_ms),
      in_flight: String(svc.in_flight),
      queued: String(svc.queued),
      desired: String(svc.desired),
      ready: String(inst.filter((i) => i.state === 'ready').length),
      starting: String(inst.filter((i) => i.state === 'starting').length),
    };
    for (const [k, v] of Object.entries(values)) stats[k].textContent = v;
    for (const c of charts) c.update(d.points, d.slots);
    panels.revisions.update(d.traffic, d.revisions);
    panels.deployments.update(d.deployments, d.output);
    panels.instances.update(inst);
    panels.output.update(d.outputLines);
    panels.access.update(d.access.mode, d.access.lines);
  }

  return { node, update };
}
