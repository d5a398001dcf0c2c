// Numbers, times and event fields as people read them: at most two decimals, with their unit,
// and nothing printed for a value that is absent.

// `1.5833333` -> `1.58`, `2` -> `2`.
export function num(x) {
  if (x == null || !Number.isFinite(x)) return '–';
  return String(Math.round(x * 100) / 100);
}

export const perSecond = (x) => `${num(x)}/s`;
export const percent = (x) => (x == null ? '–' : `${num(x)}%`);

// Milliseconds, as seconds past one.
export function millis(x) {
  if (x == null || !Number.isFinite(x)) return '–';
  return x >= 1000 ? `${num(x / 1000)} s` : `${num(x)} ms`;
}

// A deployment's length, from milliseconds: `850 ms`, `12.4 s`, `3 min 5 s`.
export function span(ms) {
  if (ms == null) return '–';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${num(s)} s`;
  const m = Math.floor(s / 60);
  return `${m} min ${Math.round(s - m * 60)} s`;
}

export function bytes(n) {
  if (n == null) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${num(v)} ${units[i]}`;
}

// The local time of day of an RFC 3339 instant (or of unix seconds).
export function clock(t) {
  const d = typeof t === 'number' ? new Date(t * 1000) : new Date(t || 0);
  if (Number.isNaN(d.getTime())) return '';
  return d.toLocaleTimeString([], { hour12: false });
}

function value(v) {
  if (typeof v === 'number') return num(v);
  if (Array.isArray(v)) return v.map(value).join(',');
  if (v && typeof v === 'object') {
    const parts = Object.entries(v).filter(([, x]) => x != null && x !== '').map(([k, x]) => `${k}=${value(x)}`);
    return `(${parts.join(' ')})`;
  }
  if (typeof v === 'string') return /[\s"=,]/.test(v) || v === '' ? JSON.stringify(v) : v;
  return String(v);
}

// An event's fields past the common ones as `key=value` pairs: numbers to two decimals, lists
// comma-separated, nested objects as `key.inner=value`, absent and empty values left out.
export function fields(event, skip) {
  const out = [];
  const add = (key, v) => {
    if (v == null || v === '') return;
    if (Array.isArray(v)) {
      if (v.length) out.push(`${key}=${v.map(value).join(',')}`);
    } else if (typeof v === 'object') {
      for (const [k, inner] of Object.entries(v)) add(`${key}.${k}`, inner);
    } else {
      out.push(`${key}=${value(v)}`);
    }
  };
  for (const [k, v] of Object.entries(event)) {
    if (!skip.has(k)) add(k, v);
  }
  return out.join('  ');
}
