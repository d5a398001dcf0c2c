// The panels of a service's card below its charts: revisions and traffic (with the rollout in
// progress), deployments, instances, what the instances printed, and the requests it answered.

import { el, table } from './page.js';
import { bytes, clock, millis, percent, perSecond, span } from './format.js';

// Mean of the last `n` steps of a revision's history.
function recent(points, n) {
  const last = (points || []).slice(-n);
  if (!last.length) return { rate: null, errors: null };
  const rate = last.reduce((a, p) => a + p.requests_per_second, 0) / last.length;
  const measured = last.filter((p) => p.error_percent != null);
  const answers = measured.reduce((a, p) => a + p.requests_per_second, 0);
  const errors = answers > 0
    ? measured.reduce((a, p) => a + p.error_percent * p.requests_per_second, 0) / answers
    : null;
  return { rate, errors };
}

function link(url, text) {
  // Only the proxy's own web addresses, as the API built them.
  if (typeof url !== 'string' || !/^https?:\/\/[^/]+\/$/.test(url)) return text || '';
  return el('a', { href: url, rel: 'noreferrer', target: '_blank' }, text || url);
}

function rolloutView(r) {
  if (!r) return [];
  const head = el('p', { class: 'rollout-head' },
    `Rollout of ${r.revision} from ${r.from}: ${r.state}`,
    r.state === 'running' ? ` (step ${r.step + 1} of ${r.steps.length})` : '');
  const steps = el('ol', { class: 'steps' }, ...r.steps.map((p, i) => {
    let st = 'next';
    if (r.state === 'done' || i < r.step) st = 'done';
    else if (i === r.step) st = r.state === 'halted' ? 'halted' : 'current';
    return el('li', { 'data-step': st }, `${p}%`);
  }));
  const figures = el('p', { class: 'muted' },
    `this step: ${r.answers} answers, ${r.errors} 5xx (halts past ${percent(r.max_error_rate * 100)})`,
    r.reason ? ` · ${r.reason}` : '');
  return [head, steps, figures];
}

export function revisionsPanel() {
  const body = el('div');
  const rollout = el('div', { class: 'rollout' });
  const node = el('section', { class: 'panel wide', 'aria-label': 'revisions and traffic' },
    el('h3', {}, 'Revisions and traffic'), body, rollout);
  function update(traffic, history) {
    if (!traffic) return;
    const shares = traffic.traffic || [];
    const rows = shares.map((s) => {
      const fig = recent(history.get(s.revision), 10);
      const bar = el('span', { class: 'bar' });
      bar.style.width = `${Math.min(100, s.percent)}%`;
      return el('tr', { 'data-revision': s.revision, 'data-percent': s.percent },
        el('td', {}, s.revision, s.revision === traffic.latest ? el('span', { class: 'tag latest' }, 'latest') : null),
        el('td', { class: 'share' }, `${s.percent}%`, el('span', { class: 'meter' }, bar)),
        el('td', {}, ...(s.tags || []).map((t) => el('span', { class: 'tag', 'data-tag': t }, t))),
        el('td', { class: 'url' }, s.url || s.host ? link(s.url, s.host) : '–'),
        el('td', {}, `${s.ready} ready / ${s.desired} wanted`),
        el('td', {}, fig.rate == null ? '–' : perSecond(fig.rate)),
        el('td', {}, percent(fig.errors)));
    });
    if (traffic.latest && !shares.some((s) => s.revision === traffic.latest)) {
      rows.push(el('tr', { 'data-revision': traffic.latest, 'data-percent': 0 },
        el('td', {}, traffic.latest, el('span', { class: 'tag latest' }, 'latest')),
        el('td', { class: 'share' }, '0%'), el('td', {}), el('td', {}, '–'),
        el('td', { colSpan: 3, class: 'muted' }, 'takes no traffic')));
    }
    body.replaceChildren(table(['revision', 'share', 'tags', 'tag URL', 'instances', 'requests', '5xx'], rows));
    rollout.replaceChildren(...rolloutView(traffic.rollout));
  }
  return { node, update };
}

export function deploymentsPanel() {
  const body = el('div');
  const node = el('section', { class: 'panel wide', 'aria-label': 'deployments' },
    el('h3', {}, 'Deployments'), body);
  // `output`: deployment id -> the last lines its revision printed (failed ones).
  function update(deployments, output) {
    const rows = [];
    for (const d of (deployments || []).slice(-8).reverse()) {
      rows.push(el('tr', { 'data-deployment': d.id, 'data-state': d.state },
        el('td', {}, d.id), el('td', {}, d.revision), el('td', {}, d.trigger),
        el('td', {}, el('span', { class: `outcome ${d.state}` }, d.state.replace('_', ' '))),
        el('td', {}, clock(d.started_at)), el('td', {}, span(d.duration_ms))));
      // Why it failed, and what its revision printed last, below it across the table.
      const lines = d.state === 'failed' ? output.get(d.id) || [] : [];
      if (d.reason || lines.length) {
        rows.push(el('tr', { class: 'detail', 'data-detail-of': d.id }, el('td', { colSpan: 6 },
          d.reason ? el('p', { class: 'why' }, d.reason) : null,
          lines.length ? el('pre', { class: 'output' }, lines.map((l) => l.line).join('\n')) : null)));
      }
    }
    body.replaceChildren(table(['deployment', 'revision', 'trigger', 'outcome', 'started', 'took'],
      rows, 'no deployment yet'));
  }
  return { node, update };
}

export function instancesPanel() {
  const body = el('div');
  const node = el('section', { class: 'panel', 'aria-label': 'instances' }, el('h3', {}, 'Instances'), body);
  function update(instances) {
    const rows = (instances || []).map((i) => el('tr', { 'data-instance': i.id, 'data-state': i.state },
      el('td', {}, i.id), el('td', {}, i.revision), el('td', {}, i.state),
      el('td', {}, i.pid == null ? '–' : String(i.pid)), el('td', {}, String(i.in_flight)),
      el('td', {}, clock(i.started_at))));
    body.replaceChildren(table(['instance', 'revision', 'state', 'pid', 'in flight', 'since'], rows,
      'no instance running'));
  }
  return { node, update };
}

// A tail's box: it stays scrolled to the newest line unless the reader scrolls up to read.
function tailBox(kind) {
  const list = el('div', { class: 'lines', 'data-lines': kind });
  list.dataset.follow = 'true';
  list.addEventListener('scroll', () => {
    list.dataset.follow = String(list.scrollTop + list.clientHeight >= list.scrollHeight - 4);
  });
  return list;
}

// Redraws a tail with `fill`.
function redraw(list, fill) {
  fill();
  if (list.dataset.follow === 'true') list.scrollTop = list.scrollHeight;
}

function select(label, options, onchange) {
  const s = el('select', { 'aria-label': label, onchange: () => onchange(s.value) });
  s.append(...options.map(([v, text]) => el('option', { value: v }, text)));
  return s;
}

// What the service's instances wrote, newest last; filtered by instance in the page.
export function outputPanel() {
  let only = '';
  let kept = [];
  const list = tailBox('output');
  const picker = select('instance', [['', 'all instances']], (v) => { only = v; draw(); });
  const node = el('section', { class: 'panel', 'aria-label': 'output' },
    el('div', { class: 'panel-head' }, el('h3', {}, 'Output'), picker), list);
  function draw() {
    const shown = kept.filter((l) => !only || l.instance === only);
    redraw(list, () => {
      list.replaceChildren(...shown.map((l) => el('div', { class: `line ${l.stream}`, 'data-instance': l.instance },
        el('span', { class: 'muted' }, `${clock(l.time)} ${l.instance} `), l.line)));
      if (!shown.length) list.append(el('div', { class: 'muted' }, 'nothing printed yet'));
    });
  }
  function update(lines) {
    kept = lines;
    const ids = [...new Set(lines.map((l) => l.instance))];
    const have = new Set([...picker.options].map((o) => o.value));
    for (const id of ids) if (!have.has(id)) picker.append(el('option', { value: id }, id));
    draw();
  }
  return { node, update };
}

const STATUS_FILTERS = [['', 'all'], ['2xx', '2xx'], ['3xx', '3xx'], ['4xx', '4xx'], ['5xx', '5xx'], ['errors', '4xx and 5xx']];

// The service's last access-log lines, live; `onfilter` asks for another status filter.
export function accessPanel(onfilter) {
  const list = tailBox('access');
  const node = el('section', { class: 'panel', 'aria-label': 'requests' },
    el('div', { class: 'panel-head' }, el('h3', {}, 'Requests'), select('status', STATUS_FILTERS, onfilter)),
    list);
  function update(mode, lines) {
    if (mode === 'off') {
      list.replaceChildren(el('div', { class: 'muted' },
        'The access log is off (log.access = "off"): set it to "stdout" or a file to see requests here.'));
      return;
    }
    redraw(list, () => {
      list.replaceChildren(...lines.map((l) => el('div', { class: 'line', 'data-status': l.status },
        el('span', { class: 'muted' }, `${clock(l.time)} `),
        el('span', { class: `code c${Math.floor(l.status / 100)}xx` }, String(l.status)),
        ` ${l.method} ${l.path} `,
        el('span', { class: 'muted' },
          `${millis(l.duration_ms)} ${bytes(l.bytes_out)}${l.revision ? ` ${l.revision}` : ''}${l.cold_start ? ' cold' : ''}${l.reason ? ` · ${l.reason}` : ''}`))));
      if (!lines.length) list.append(el('div', { class: 'muted' }, 'no request yet'));
    });
  }
  return { node, update };
}
