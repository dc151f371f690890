/**
 * The dashboard page: plain HTML, CSS and one small script, served as they are
 * (no build step). The script only builds DOM nodes with textContent, so names
 * coming from agents are never parsed as HTML.
 */

export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>vmferry dashboard</title>
<link rel="stylesheet" href="/style.css">
<script src="/app.js" defer></script>
</head>
<body>
<header>
  <h1>vmferry</h1>
  <span id="connection" class="connection">connecting…</span>
  <span id="updated"></span>
</header>
<main>
  <section>
    <h2>Migrations</h2>
    <div id="active"><p class="empty">none running</p></div>
  </section>
  <section>
    <h2>Hosts</h2>
    <div id="hosts" class="hosts"></div>
  </section>
  <section>
    <h2>Finished</h2>
    <table id="finished" class="finished"></table>
  </section>
</main>
<div id="message" role="status"></div>
</body>
</html>
`;

export const DASHBOARD_CSS = `
:root { --fg: #1d2330; --muted: #667085; --line: #e4e7ec; --ok: #067647; --bad: #b42318; --warn: #b54708; --accent: #1f6feb; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 "DejaVu Sans", system-ui, sans-serif; color: var(--fg); background: #f6f7f9; }
header { display: flex; align-items: baseline; gap: 16px; padding: 12px 24px; background: #101828; color: #fff; }
header h1 { margin: 0; font-size: 20px; letter-spacing: .5px; }
.connection { font-size: 12px; padding: 2px 8px; border-radius: 10px; background: #475467; }
.connection.live { background: var(--ok); }
.connection.lost { background: var(--bad); }
#updated { font-size: 12px; color: #98a2b3; margin-left: auto; }
main { padding: 8px 24px 24px; }
h2 { font-size: 15px; text-transform: uppercase; letter-spacing: .6px; color: var(--muted); margin: 20px 0 8px; }
.empty { color: var(--muted); margin: 4px 0; }
.hosts { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 12px; }
.host, .migration { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; }
.host h3 { margin: 0; font-size: 16px; }
.host .meta { color: var(--muted); font-size: 12px; margin-bottom: 6px; }
.host.down { border-color: var(--bad); }
.host .error { color: var(--bad); font-size: 12px; }
table { border-collapse: collapse; width: 100%; }
th { text-align: left; font-weight: 600; color: var(--muted); font-size: 12px; }
td, th { padding: 4px 8px 4px 0; border-bottom: 1px solid var(--line); }
.badge { display: inline-block; white-space: nowrap; padding: 0 8px; border-radius: 10px; font-size: 12px; background: #eaecf0; }
.badge.ok, .badge.completed, .badge.running { background: #dcfae6; color: var(--ok); }
.badge.corrupt, .badge.stalled, .badge.failed { background: #fee4e2; color: var(--bad); }
.badge.maintenance, .badge.cancelled, .badge.migrating, .badge.incoming, .badge.paused { background: #fef0c7; color: var(--warn); }
.migration { margin-bottom: 10px; }
.migration .title { display: flex; gap: 10px; align-items: baseline; }
.migration .title strong { font-size: 15px; }
.migration progress { width: 100%; height: 18px; margin: 8px 0 4px; accent-color: var(--accent); }
.migration .figures { color: var(--muted); font-variant-numeric: tabular-nums; }
.migration .actions { margin-top: 8px; display: flex; gap: 8px; }
button { font: inherit; padding: 4px 12px; border-radius: 6px; border: 1px solid #d0d5dd; background: #fff; cursor: pointer; }
button.danger { color: var(--bad); border-color: #fda29b; }
button:disabled { opacity: .5; cursor: default; }
.finished { background: #fff; border: 1px solid var(--line); border-radius: 8px; }
.finished td, .finished th { padding: 6px 10px; }
a { color: var(--accent); }
td.reason { color: var(--muted); font-size: 12px; }
td.number { white-space: nowrap; }
#message { position: fixed; bottom: 16px; right: 16px; max-width: 420px; }
#message div { background: #101828; color: #fff; padding: 8px 12px; border-radius: 6px; margin-top: 6px; }
`;

export const DASHBOARD_JS = `'use strict';
const GiB = 1024 ** 3, MiB = 1024 ** 2;
function bytes(n) { return n >= GiB ? (n / GiB).toFixed(2) + ' GiB' : n >= MiB ? (n / MiB).toFixed(1) + ' MiB' : Math.round(n / 1024) + ' KiB'; }
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v; else if (k.startsWith('on')) node.addEventListener(k.slice(2), v); else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) if (c !== undefined && c !== null) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}
function badge(text, title) { return el('span', { class: 'badge ' + text, title }, text); }
function say(text) {
  const box = document.getElementById('message');
  const line = el('div', {}, text);
  box.append(line);
  setTimeout(() => line.remove(), 8000);
}
async function act(m, action) {
  const what = action === 'abort'
    ? 'Abort migration ' + m.id + ' of ' + m.vm + '? The VM keeps running on ' + m.from + '.'
    : 'Force migration ' + m.id + ' of ' + m.vm + ' to complete? The guest may pause until the rest is sent.';
  if (!confirm(what)) return;
  const res = await fetch('/api/hosts/' + m.hostKey + '/migrations/' + encodeURIComponent(m.id) + '/' + action, {
    method: 'POST', headers: { 'x-vmferry-dashboard': '1' },
  });
  const body = await res.json().catch(() => ({}));
  say(res.ok ? action + ' requested for ' + m.vm : (body.message || res.statusText) + (body.hint ? ' (' + body.hint + ')' : ''));
}
function renderActive(list) {
  const box = document.getElementById('active');
  box.replaceChildren();
  if (list.length === 0) { box.append(el('p', { class: 'empty' }, 'none running')); return; }
  for (const m of list) {
    const figures = m.queued ? ['queued'] : [
      m.percent === null ? 'starting' : m.percent.toFixed(1) + '%',
      m.throughputGbps === null ? null : m.throughputGbps.toFixed(2) + ' Gbit/s',
      m.remainingBytes === null ? null : bytes(m.remainingBytes) + ' left',
      m.pass === null ? null : 'pass ' + m.pass,
      Math.round(m.elapsedSeconds) + ' s',
    ].filter((x) => x !== null);
    const handingOver = m.state === 'postcopy' || m.state === 'completing';
    box.append(el('div', { class: 'migration', 'data-migration': m.id, 'data-state': m.state },
      el('div', { class: 'title' }, el('strong', {}, m.vm), m.from + ' → ' + m.to, badge(m.state)),
      el('progress', { max: 100, value: m.percent === null ? 0 : m.percent, 'aria-label': 'share of memory sent' }),
      el('div', { class: 'figures' }, figures.join(' · ')),
      m.controllable ? el('div', { class: 'actions' },
        el('button', { class: 'danger', 'data-action': 'abort', disabled: handingOver, title: handingOver ? 'the guest may already run on the destination' : undefined, onclick: () => act(m, 'abort') }, 'Abort'),
        el('button', { 'data-action': 'force-complete', disabled: handingOver, onclick: () => act(m, 'force-complete') }, 'Force complete')) : null));
  }
}
function renderHosts(hosts) {
  const box = document.getElementById('hosts');
  box.replaceChildren();
  for (const h of hosts) {
    const rows = h.vms.map((vm) => el('tr', { 'data-vm': vm.name },
      el('td', {}, vm.name), el('td', {}, badge(vm.state)), el('td', { class: 'number' }, vm.memoryMiB + ' MiB'),
      el('td', { class: 'health' }, badge(vm.health, vm.healthReason)), el('td', { class: 'reason' }, vm.healthReason)));
    box.append(el('article', { class: 'host' + (h.reachable ? '' : ' down'), 'data-host': h.name },
      el('h3', {}, h.name, h.maintenance ? badge('maintenance', 'takes no new VM and no incoming migration') : null),
      el('div', { class: 'meta' }, h.address + (h.reachable ? ' · ' + h.accelerator + ' · QEMU ' + h.qemuVersion : ' · unreachable')),
      h.error ? el('div', { class: 'error' }, h.error) : null,
      rows.length === 0 ? el('p', { class: 'empty' }, 'no VMs')
        : el('table', {}, el('tr', {}, el('th', {}, 'VM'), el('th', {}, 'state'), el('th', {}, 'memory'), el('th', {}, 'guest'), el('th', {}, '')), ...rows)));
  }
}
function renderFinished(list) {
  const table = document.getElementById('finished');
  table.replaceChildren();
  if (list.length === 0) { table.append(el('tr', {}, el('td', { class: 'empty' }, 'none yet'))); return; }
  table.append(el('tr', {}, ...['finished', 'VM', 'from → to', 'state', 'throughput', 'downtime', 'chart'].map((t) => el('th', {}, t))));
  for (const m of list) table.append(el('tr', { 'data-finished': m.id },
    el('td', {}, new Date(m.finishedAt).toLocaleTimeString()), el('td', {}, m.vm), el('td', {}, m.from + ' → ' + m.to),
    el('td', {}, badge(m.state)), el('td', {}, m.gbps === undefined ? '' : m.gbps.toFixed(2) + ' Gbit/s'),
    el('td', {}, m.downtimeMs === undefined ? '' : m.downtimeMs + ' ms'),
    el('td', {}, el('a', { href: m.chartUrl, target: '_blank', 'data-chart': m.id }, 'chart'))));
}
function render(s) {
  renderActive(s.active);
  renderHosts(s.hosts);
  renderFinished(s.finished);
  document.getElementById('updated').textContent = 'updated ' + new Date(s.time).toLocaleTimeString();
}
const connection = document.getElementById('connection');
const events = new EventSource('/events');
events.addEventListener('state', (e) => render(JSON.parse(e.data)));
events.addEventListener('open', () => { connection.textContent = 'live'; connection.className = 'connection live'; });
events.addEventListener('error', () => { connection.textContent = 'reconnecting…'; connection.className = 'connection lost'; });
`;
