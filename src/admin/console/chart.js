// Small line charts drawn as SVG from a service's history: one path per series, the newest step
// at the right edge, a gap where a value was not measured (no request, no latency).

const SVG = 'http://www.w3.org/2000/svg';
const W = 300;
const H = 64;

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}

// `series`: [{ name, cls, value: (point) => number | null, format: (number) => string }].
// `floor`: the smallest top of the y axis (so a flat 0.1 does not fill the chart).
export function chart(key, label, series, floor) {
  const plot = svg('svg', {
    viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', role: 'img', class: 'plot',
    'data-chart': key, 'data-points': 0,
  });
  const title = svg('title');
  plot.append(title);
  const grid = svg('line', { x1: 0, x2: W, y1: H - 0.5, y2: H - 0.5, class: 'axis' });
  plot.append(grid);
  const paths = series.map((s) => {
    const p = svg('path', { class: `line ${s.cls}`, 'vector-effect': 'non-scaling-stroke', d: '' });
    plot.append(p);
    return p;
  });
  const caption = document.createElement('figcaption');
  const node = document.createElement('figure');
  node.className = 'chart';
  node.append(caption, plot);

  // `points` oldest first; `slots`: how many steps the chart is wide.
  function update(points, slots) {
    const values = series.map((s) => points.map((p) => s.value(p)));
    const measured = values.flat().filter((v) => v != null && Number.isFinite(v));
    const top = Math.max(floor, ...measured);
    const x0 = slots - points.length;
    const xOf = (i) => ((x0 + i) / Math.max(1, slots - 1)) * W;
    const yOf = (v) => H - 2 - (v / top) * (H - 6);
    values.forEach((vs, k) => {
      let d = '';
      let pen = false;
      vs.forEach((v, i) => {
        if (v == null || !Number.isFinite(v)) { pen = false; return; }
        d += `${pen ? 'L' : 'M'}${xOf(i).toFixed(1)} ${yOf(v).toFixed(1)}`;
        pen = true;
      });
      paths[k].setAttribute('d', d);
    });
    plot.setAttribute('data-points', String(points.length));
    const latest = series.map((s, k) => {
      const vs = values[k];
      let last = null;
      for (let i = vs.length - 1; i >= 0; i -= 1) if (vs[i] != null) { last = vs[i]; break; }
      return { s, last };
    });
    caption.replaceChildren(document.createTextNode(label));
    for (const { s, last } of latest) {
      const item = document.createElement('span');
      item.className = `legend ${s.cls}`;
      item.textContent = `${s.name ? `${s.name} ` : ''}${last == null ? '–' : s.format(last)}`;
      caption.append(' ', item);
    }
    title.textContent = `${label}: ${latest.map(({ s, last }) => `${s.name || ''} ${last == null ? '–' : s.format(last)}`.trim()).join(', ')} (highest ${series[0].format(top)})`;
  }

  return { node, update };
}
