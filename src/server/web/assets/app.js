// ects web page: sign in, browse files and their versions, collect work (teachers).
//
// Every name shown comes from students and is treated as text: elements are built with
// createElement and filled with textContent / append(string), never parsed as HTML.
// Reads go through the same /api/v1 routes as every client, signed in by the session
// cookie; the only writes are sign-in and sign-out.
'use strict';

const state = { me: null, csrf: '' };

const $ = (id) => document.getElementById(id);

/** An element with attributes and children (strings become text nodes). */
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'text') e.textContent = String(v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) {
    if (c !== null && c !== undefined) e.append(c);
  }
  return e;
}

const enc = encodeURIComponent;
const encPath = (path) => path.split('/').map(enc).join('/');

/** A signed-out answer ends the view quietly: the sign-in form is shown instead. */
class SignedOut extends Error {}

async function api(url) {
  const r = await fetch(url, {
    headers: { 'X-Ects-Web': '1', Accept: 'application/json' },
    credentials: 'same-origin',
    cache: 'no-store',
  });
  if (r.status === 401) {
    showSignin('Your session has ended. Please sign in again.');
    throw new SignedOut();
  }
  if (!r.ok) throw new Error(await errorText(r));
  return r;
}

async function errorText(r) {
  try {
    const body = await r.json();
    if (body && typeof body.error === 'string') return body.error;
  } catch (_) { /* not JSON */ }
  return `${r.status} ${r.statusText}`;
}

function say(text) { $('status').textContent = text; }

function formatSize(n) {
  if (n < 1024) return `${n} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let v = n;
  let i = -1;
  do { v /= 1024; i += 1; } while (v >= 1024 && i < units.length - 1);
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

function formatTime(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

// ---- sign-in -------------------------------------------------------------------

function showSignin(message) {
  state.me = null;
  state.csrf = '';
  $('view').hidden = true;
  $('view').replaceChildren();
  $('signout').hidden = true;
  $('who').textContent = '';
  $('signin').hidden = false;
  $('signin-error').textContent = message || '';
  $('signin-name').focus();
}

function signedIn(session) {
  state.me = session;
  state.csrf = session.csrf;
  $('signin').hidden = true;
  $('signin-error').textContent = '';
  $('signin-password').value = '';
  $('who').textContent = `${session.name} (${session.role})`;
  $('signout').hidden = false;
  $('view').hidden = false;
  route();
}

async function signIn(event) {
  event.preventDefault();
  const name = $('signin-name').value.trim();
  const password = $('signin-password').value;
  $('signin-submit').disabled = true;
  $('signin-error').textContent = '';
  try {
    const r = await fetch('/web/login', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Ects-Web': '1' },
      credentials: 'same-origin',
      body: JSON.stringify({ name, password }),
    });
    if (!r.ok) {
      $('signin-error').textContent = await errorText(r);
      return;
    }
    signedIn(await r.json());
  } catch (e) {
    $('signin-error').textContent = `Cannot reach the server: ${e.message}`;
  } finally {
    $('signin-submit').disabled = false;
  }
}

async function signOut() {
  try {
    await fetch('/web/logout', {
      method: 'POST',
      headers: { 'X-CSRF-Token': state.csrf, 'X-Ects-Web': '1' },
      credentials: 'same-origin',
    });
  } catch (_) { /* signed out locally anyway */ }
  window.location.hash = '#/';
  showSignin('You are signed out.');
}

// ---- routing -------------------------------------------------------------------

/** `#/tree/<user>/<dir…>`, `#/file/<user>/<path…>` or home. */
function parseHash() {
  const parts = window.location.hash.replace(/^#\/?/, '').split('/');
  let decoded;
  try {
    decoded = parts.map(decodeURIComponent);
  } catch (_) {
    return { kind: 'bad' };
  }
  const [kind, user, ...rest] = decoded;
  const path = rest.filter((p) => p !== '').join('/');
  if ((kind === 'tree' || kind === 'file') && user) return { kind, user, path };
  if (kind === '' || kind === undefined) return { kind: 'home' };
  return { kind: 'bad' };
}

const treeHref = (user, dir) => `#/tree/${enc(user)}/${dir ? encPath(dir) : ''}`;
const fileHref = (user, path) => `#/file/${enc(user)}/${encPath(path)}`;

let renderToken = 0;

async function route() {
  if (!state.me) return;
  const token = ++renderToken;
  const view = $('view');
  const target = parseHash();
  say('Loading…');
  try {
    let content;
    if (target.kind === 'home') {
      content = state.me.role === 'teacher'
        ? await classView()
        : await treeView(state.me.name, '');
    } else if (target.kind === 'tree') {
      content = await treeView(target.user, target.path);
    } else if (target.kind === 'file') {
      content = await fileView(target.user, target.path);
    } else {
      content = [el('h1', { text: 'Not found' }), el('p', { text: 'This address is not a page of ects.' })];
    }
    if (token !== renderToken) return;
    view.replaceChildren(...content);
    say('');
  } catch (e) {
    if (e instanceof SignedOut || token !== renderToken) return;
    view.replaceChildren(
      el('h1', { text: 'Cannot show this page' }),
      el('p', { class: 'error', role: 'alert', id: 'view-error', text: e.message }),
      el('p', {}, el('a', { href: '#/', text: 'Back to the start' })),
    );
    say('');
  }
  const heading = view.querySelector('h1');
  if (heading) {
    heading.tabIndex = -1;
    heading.focus();
  }
}

function crumbs(user, path, isFile) {
  const items = [];
  if (state.me.role === 'teacher') items.push(el('li', {}, el('a', { href: '#/', text: 'Class' })));
  const parts = path ? path.split('/') : [];
  items.push(el('li', {}, parts.length === 0 && !isFile
    ? el('span', { 'aria-current': 'page', text: user })
    : el('a', { href: treeHref(user, ''), text: user })));
  parts.forEach((name, i) => {
    const last = i === parts.length - 1;
    items.push(el('li', {}, last
      ? el('span', { 'aria-current': 'page', text: name })
      : el('a', { href: treeHref(user, parts.slice(0, i + 1).join('/')), text: name })));
  });
  return el('nav', { 'aria-label': 'Folders' }, el('ol', { class: 'crumbs' }, ...items));
}

// ---- views ---------------------------------------------------------------------

async function classView() {
  const users = await (await api('/api/v1/users')).json();
  const students = users.filter((u) => u.role === 'student');
  const teachers = users.filter((u) => u.role === 'teacher');
  const list = (people) => el('ul', { class: 'class-list' }, ...people.map((u) => el('li', {},
    el('a', { href: treeHref(u.name, ''), 'data-user': u.name, text: u.name }),
    u.disabled ? el('span', { class: 'tag', text: 'disabled' }) : null)));
  return [
    el('h1', { text: 'Class' }),
    el('h2', { text: `Students (${students.length})` }),
    students.length ? list(students) : el('p', { text: 'No students yet.' }),
    el('h2', { text: `Teachers (${teachers.length})` }),
    list(teachers),
    collectSection(),
  ];
}

async function treeView(user, dir) {
  const url = `/api/v1/tree/${enc(user)}/${dir ? encPath(dir) : ''}`;
  const tree = await (await api(url)).json();
  const join = (name) => (dir ? `${dir}/${name}` : name);
  const dirs = [...tree.dirs].sort((a, b) => a.localeCompare(b));
  const files = [...tree.files].sort((a, b) => a.name.localeCompare(b.name));
  const items = [
    ...dirs.map((name) => el('li', { class: 'dir' },
      el('a', { href: treeHref(user, join(name)), 'data-dir': name, text: `${name}/` }))),
    ...files.map((f) => el('li', { class: 'file' },
      el('a', { href: fileHref(user, join(f.name)), 'data-file': f.name, text: f.name }),
      el('span', { class: 'meta', text: `${f.versions} version${f.versions === 1 ? '' : 's'} · ${formatSize(f.latest.size)} · ${formatTime(f.latest.stored_at)}` }))),
  ];
  return [
    crumbs(user, dir, false),
    el('h1', { text: dir ? dir.split('/').pop() : `Files of ${user}` }),
    items.length ? el('ul', { class: 'entries', id: 'entries' }, ...items)
      : el('p', { id: 'empty', text: 'Nothing stored here yet.' }),
  ];
}

async function fileView(user, path) {
  const versions = await (await api(`/api/v1/versions/${enc(user)}/${encPath(path)}`)).json();
  const name = path.split('/').pop();
  const newestFirst = [...versions].reverse();
  const items = newestFirst.map((v, i) => {
    const href = `/api/v1/files/${enc(user)}/${encPath(path)}?sha256=${enc(v.sha256)}`;
    const number = versions.length - i;
    return el('li', { 'data-sha256': v.sha256 },
      el('time', { class: 'when', datetime: v.stored_at, text: formatTime(v.stored_at) }),
      el('span', { class: 'facts' },
        el('span', { text: `Version ${number}${i === 0 ? ' (newest)' : ''}` }),
        el('span', { text: formatSize(v.size) }),
        el('code', { class: 'hash', title: v.sha256, text: v.sha256.slice(0, 8) }),
        el('a', { href, download: name, 'aria-label': `Download version ${number} of ${name}`, text: 'Download' })));
  });
  return [
    crumbs(user, path, true),
    el('h1', { text: name }),
    el('p', { class: 'hint', text: `${versions.length} version${versions.length === 1 ? '' : 's'}, newest first. Times are when the server stored each version.` }),
    el('ol', { class: 'timeline', id: 'versions' }, ...items),
  ];
}

function collectSection() {
  const result = el('div', { id: 'collect-result', 'aria-live': 'polite' });
  const form = el('form', { id: 'collect-form' },
    el('label', { for: 'collect-pattern', text: 'Files to collect (pattern)' }),
    el('input', { id: 'collect-pattern', name: 'pattern', required: true, spellcheck: 'false', autocapitalize: 'none', placeholder: 'Documents/History/essay*.docx' }),
    el('p', { class: 'hint', text: '* and ? match within a name, ** any folders; upper and lower case are the same.' }),
    el('label', { for: 'collect-deadline', text: 'Deadline (optional, your local time)' }),
    el('input', { id: 'collect-deadline', name: 'before', type: 'datetime-local', step: '1' }),
    el('label', { class: 'check' },
      el('input', { id: 'collect-late', type: 'checkbox' }),
      'Also put late-only work in the zip'),
    el('button', { type: 'submit', text: 'Find work' }));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    collect(result).catch((err) => {
      if (!(err instanceof SignedOut)) {
        result.replaceChildren(el('p', { class: 'error', role: 'alert', text: err.message }));
      }
    });
  });
  return el('section', { 'aria-labelledby': 'collect-title' },
    el('h2', { id: 'collect-title', text: 'Collect work' }), form, result);
}

async function collect(result) {
  const params = new URLSearchParams();
  params.set('pattern', $('collect-pattern').value.trim());
  const deadline = $('collect-deadline').value;
  if (deadline) {
    const d = new Date(deadline);
    if (Number.isNaN(d.getTime())) throw new Error('The deadline is not a valid time.');
    params.set('before', d.toISOString());
  }
  result.replaceChildren(el('p', { text: 'Looking…' }));
  const text = await (await api(`/api/v1/collect?${params}`)).text();
  const lines = text.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l));
  const failed = lines.find((l) => typeof l.error === 'string');
  if (failed) throw new Error(failed.error);
  if (!lines.some((l) => l.end)) throw new Error('The answer was cut off; please try again.');
  const rows = lines.filter((l) => l.user);
  const count = (s) => rows.filter((r) => r.status === s).length;
  if ($('collect-late').checked) params.set('late', '1');
  const table = el('table', {},
    el('thead', {}, el('tr', {}, ...['Student', 'File', 'Status', 'Stored'].map((h) => el('th', { scope: 'col', text: h })))),
    el('tbody', {}, ...rows.map((r) => el('tr', {},
      el('td', { text: r.user }),
      el('td', {}, r.path ? el('a', { href: fileHref(r.user, r.path), text: r.path }) : '—'),
      el('td', { class: r.status, text: r.status }),
      el('td', { text: r.stored_at ? formatTime(r.stored_at) : '' })))));
  result.replaceChildren(
    el('p', { text: `${count('on-time')} on time, ${count('late-only')} late only, ${count('missing')} missing.` }),
    el('p', {}, el('a', { class: 'button', id: 'collect-zip', href: `/api/v1/collect.zip?${params}`, download: 'collection.zip', text: 'Download as zip' })),
    el('div', { class: 'table-wrap' }, table));
}

// ---- start ---------------------------------------------------------------------

async function start() {
  $('signin-form').addEventListener('submit', signIn);
  $('signout').addEventListener('click', signOut);
  window.addEventListener('hashchange', route);
  try {
    const r = await fetch('/web/session', {
      headers: { 'X-Ects-Web': '1' }, credentials: 'same-origin', cache: 'no-store',
    });
    if (r.ok) {
      signedIn(await r.json());
      return;
    }
  } catch (_) { /* fall through to the form */ }
  showSignin('');
}

document.addEventListener('DOMContentLoaded', start);
