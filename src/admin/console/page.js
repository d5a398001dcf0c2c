// What every part of the console shares: the admin API client (token, JSON both ways) and DOM
// building. Text always goes in as text (`textContent`, `append` of strings), never as markup.

const TOKEN_KEY = 'wakeway-admin-token';

export class Unauthorized extends Error {}

export const session = {
  token: sessionStorage.getItem(TOKEN_KEY) || '',
};

// `#token=...` in the address (a link from a script) signs in, and leaves the address bar and
// the history at once.
export function tokenFromFragment() {
  const m = /(?:^#|&)token=([^&]*)/.exec(window.location.hash);
  if (!m) return;
  setToken(decodeURIComponent(m[1]));
  window.history.replaceState(null, '', window.location.pathname + window.location.search);
}

export function setToken(token) {
  session.token = token;
  sessionStorage.setItem(TOKEN_KEY, token);
}

export async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET') headers['Content-Type'] = 'application/json';
  if (session.token) headers.Authorization = `Bearer ${session.token}`;
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

export const servicePath = (name, rest) => `/v1/services/${encodeURIComponent(name)}${rest || ''}`;

export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null) continue;
    if (k === 'class') node.className = v;
    else if (k.startsWith('data-') || k.startsWith('aria-')) node.setAttribute(k, String(v));
    else node[k] = v;
  }
  for (const c of children) {
    if (c != null && c !== false) node.append(c);
  }
  return node;
}

function show(id, text, error) {
  const s = document.getElementById(id);
  s.textContent = text;
  s.classList.toggle('error', !!error);
}

// The connection's state, refreshed by every poll.
export const setStatus = (text, error) => show('status', text, error);
// The outcome of the last button pressed; stays until the next one.
export const setNote = (text, error) => show('note', text, error);

// A table with a header row; `rows` are arrays of cells (text or nodes), or `tr` nodes.
export function table(headers, rows, empty) {
  const body = el('tbody');
  const filled = rows.map((r) => (r instanceof Node ? r : el('tr', {}, ...r.map((c) => el('td', {}, c)))));
  if (!filled.length && empty) {
    filled.push(el('tr', {}, el('td', { colSpan: headers.length, class: 'muted' }, empty)));
  }
  body.replaceChildren(...filled);
  return el('div', { class: 'table' },
    el('table', {}, el('thead', {}, el('tr', {}, ...headers.map((h) => el('th', {}, h)))), body));
}
