// berth status page: one live stream (/ui/live), rendered with plain DOM.
// Every text from the agent is hostile input: it only ever goes into
// textContent or attributes, never into HTML.
'use strict';

const KINDS = ['Pod', 'Deployment', 'Service', 'Volume', 'Event'];
const S = { objs: {}, status: null, statusAt: 0, usage: null };
KINDS.forEach(k => { S.objs[k] = new Map(); });

// --- DOM helpers ---
function h(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  add(e, kids);
  return e;
}
function add(e, kids) {
  for (const k of kids.flat(3)) {
    if (k == null || k === false) continue;
    e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
}
const $ = id => document.getElementById(id);
function fill(id, ...kids) {
  const b = $(id).querySelector('.body');
  b.replaceChildren();
  add(b, kids);
}
const pill = (cls, text, title) => h('span', { class: 'pill ' + cls, title }, text);
const mono = t => h('span', { class: 'mono' }, t);
const muted = t => h('span', { class: 'muted' }, t);
function kv(pairs) {
  return h('dl', { class: 'kv' }, pairs.filter(p => p && p[1] != null && p[1] !== '')
    .map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}
function table(head, rows) {
  return h('div', { class: 'scroll' }, h('table', {},
    h('thead', {}, h('tr', {}, head.map(c => h('th', {}, c)))),
    h('tbody', {}, rows)));
}

// --- formatting ---
function dur(s) {
  if (s == null || !isFinite(s)) return '';
  s = Math.max(0, Math.floor(s));
  if (s < 90) return s + 's';
  if (s < 5400) return Math.round(s / 60) + 'm';
  if (s < 172800) return Math.round(s / 3600) + 'h';
  return Math.round(s / 86400) + 'd';
}
const since = t => (t ? dur((Date.now() - Date.parse(t)) / 1000) : '');
function bytes(n) {
  if (n == null) return '';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(n < 10 ? 1 : 0) : n) + ' ' + u[i];
}
const short = r => (r ? String(r).slice(0, 12) : '');
const sorted = k => [...S.objs[k].values()].sort((a, b) =>
  (a.metadata.namespace + '/' + a.metadata.name).localeCompare(b.metadata.namespace + '/' + b.metadata.name));
const nsName = m => (m.namespace && m.namespace !== 'default' ? m.namespace + '/' : '') + m.name;

// --- live stream ---
let backoff = 500;
let lastData = 0;
let ctrl = null;
function setConn(cls, text) { const c = $('conn'); c.className = 'pill ' + cls; c.textContent = text; }

async function connect() {
  ctrl = new AbortController();
  let synced = false;
  try {
    const r = await fetch('/ui/live?watch=true', { cache: 'no-store', signal: ctrl.signal });
    if (!r.ok) throw new Error('HTTP ' + r.status);
    const rd = r.body.getReader();
    const dec = new TextDecoder();
    let buf = '';
    for (;;) {
      const { value, done } = await rd.read();
      if (done) break;
      lastData = Date.now();
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const l = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (!l) continue;
        const m = JSON.parse(l);
        if (m.type === 'SYNCED') { synced = true; backoff = 500; setConn('ok', 'live'); }
        onMsg(m);
      }
    }
  } catch (e) { /* the agent went away or the stream broke: reconnect below */ }
  setConn('bad', synced ? 'reconnecting…' : 'offline, retrying');
  document.body.classList.add('stale');
  setTimeout(connect, backoff);
  backoff = Math.min(backoff * 2, 8000);
}
// a stream that stops sending (PING every 20 s) is dead: reconnect
setInterval(() => { if (ctrl && lastData && Date.now() - lastData > 45000) { lastData = 0; ctrl.abort(); } }, 5000);

function onMsg(m) {
  switch (m.type) {
    case 'HELLO': KINDS.forEach(k => S.objs[k].clear()); break;
    case 'ADDED': case 'MODIFIED': S.objs[m.kind]?.set(key(m.object), m.object); break;
    case 'DELETED': S.objs[m.kind]?.delete(key(m.object)); break;
    case 'STATUS': S.status = m.object; S.statusAt = Date.now(); break;
    case 'USAGE': S.usage = m.object; break;
    case 'SYNCED': document.body.classList.remove('stale'); break;
    default: return;
  }
  schedule();
}
const key = o => o.metadata.namespace + '/' + o.metadata.name;
let queued = false;
function schedule() {
  if (queued) return;
  queued = true;
  requestAnimationFrame(() => { queued = false; render(); });
}

// --- rendering ---
function render() {
  const st = S.status;
  if (st) {
    $('nodename').textContent = st.node;
    document.title = 'berth · ' + st.node;
    renderNode(st);
    renderSources(st);
  }
  renderWorkloads();
  renderServices();
  renderVolumes();
  renderEvents();
  document.body.dataset.ready = st ? '1' : '';
}

function renderNode(st) {
  const host = st.host || {};
  const up = host.hostUptimeSeconds != null ? host.hostUptimeSeconds + (Date.now() - S.statusAt) / 1000 : null;
  const conds = Array.isArray(st.conditions) ? st.conditions : [];
  fill('node', kv([
    ['name', mono(st.node)],
    ['labels', Object.entries(host.labels || {}).map(([k, v]) => h('span', { class: 'chip' }, k + '=' + v))],
    ['kernel', host.kernel && mono(host.kernel + ' · ' + host.arch)],
    ['cgroups', host.cgroup],
    ['host up', dur(up)],
    ['agent', ['berth ' + st.version + ' · up ', since(host.agentStarted), ' · instance ', mono(st.instance)]],
    ['state', [st.ready ? pill('ok', 'ready') : pill('wait', 'starting'), ' ', st.complete ? '' : pill('warn', 'sources incomplete'),
      st.errors ? pill('bad', st.errors + ' manifest error' + (st.errors > 1 ? 's' : '')) : '']],
    ['degraded', conds.length ? conds.map(c => h('div', { class: 'warn' }, typeof c === 'string' ? c : [c.type, c.reason, c.message].filter(Boolean).join(': '))) : muted('nothing reported')],
    ['not here', (st.notScheduled || []).length ? st.notScheduled.map(u => h('div', {}, mono(u.object), ' ', muted(u.reason))) : null],
    ['conflicts', (st.conflicts || []).length ? diagList(st.conflicts) : null],
  ]));
}

function diagList(ds) {
  return h('ul', { class: 'diag' }, ds.slice(0, 50).map(d =>
    h('li', { class: String(d.severity).toLowerCase() === 'error' ? 'bad' : 'warn' }, d.text || JSON.stringify(d))));
}

function renderSources(st) {
  const srcs = st.sources || [];
  fill('sources', srcs.length ? srcs.map(s => {
    const g = s.git;
    const c = g && g.applied;
    const r = s.rollout;
    return h('div', { class: 'src' },
      h('div', { class: 'group-h' }, h('h3', {}, s.type), mono(s.location),
        s.complete ? pill('ok', 'complete') : pill('warn', 'incomplete'),
        s.lastError ? pill('bad', 'error') : ''),
      kv([
        ['applied', [mono(short(s.revision) || 'none'), c ? [' ', c.subject, ' ', muted('by ' + c.author)] : '']],
        ['synced', s.lastSync ? since(s.lastSync) + ' ago' : 'never'],
        ['files', s.files + ' files, ' + s.objects + ' objects'],
        ['error', s.lastError && h('span', { class: 'bad' }, s.lastError)],
        ['refused', g && g.refused && [mono(short(g.refused.commit.id)), ' ', g.refused.commit.subject, diagList(g.refused.diagnostics || [])]],
        ['rollout', r && [pill(ROLL[r.state] || 'wait', r.state), ' ', r.message]],
        ['running', r && r.runningRevision && r.runningRevision !== r.appliedRevision && h('span', { class: 'bad' }, mono(short(r.runningRevision)), ' (not the applied revision)')],
        ['last healthy', r && mono(short(r.lastHealthyRevision) || 'none')],
      ]),
      (s.diagnostics || []).length ? diagList(s.diagnostics) : '',
      timeline(s));
  }) : muted('no sources reported yet'));
}

const SVG = 'http://www.w3.org/2000/svg';
function svg(tag, attrs, ...kids) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  add(e, kids);
  return e;
}

// The rollout timeline: the agent's history of this source's revisions
// (healthy, in-progress, failed, rolled-back, superseded; rollbacks marked ↺),
// plus a refused Git commit. The latest failure shows its reason and log tail.
const ROLL = { 'healthy': 'ok', 'progressing': 'info', 'rolling-back': 'warn', 'failed': 'bad', 'rolled-back': 'bad' };
const DOT = { 'healthy': 'var(--ok)', 'in-progress': 'var(--info)', 'failed': 'var(--bad)', 'rolled-back': 'var(--bad)', 'superseded': 'var(--mut)', 'refused': 'var(--bad)' };
function timeline(s) {
  const r = s.rollout;
  const pts = r ? (r.history || []).map(e => ({ rev: e.revision, at: e.time, state: e.result, rollback: e.rollback, why: e.reason })) : [];
  if (s.git && s.git.refused) {
    const c = s.git.refused.commit;
    pts.push({ rev: c.id, at: c.time, subject: c.subject, state: 'refused' });
  }
  const note = h('p', { class: 'muted' }, pts.length < 2
    ? 'One revision so far: each new revision is a rollout, watched until healthy or rolled back.'
    : 'Last ' + pts.length + ' rollouts, oldest left.');
  if (!pts.length) return note;
  const W = 400, y = 22, x0 = 20, step = pts.length > 1 ? (W - 2 * x0) / (pts.length - 1) : 0;
  const g = svg('svg', { class: 'timeline', viewBox: `0 0 ${W} 60`, preserveAspectRatio: 'xMinYMid meet', role: 'img', 'aria-label': 'rollout timeline' },
    svg('line', { x1: x0, y1: y, x2: pts.length > 1 ? W - x0 : x0, y2: y, stroke: 'currentColor', 'stroke-opacity': '.3' }));
  pts.forEach((p, i) => {
    const x = x0 + i * step;
    const why = p.why ? ` — ${p.why.reason} ${p.why.object}${p.why.container ? ' container ' + p.why.container : ''}` : '';
    g.append(svg('circle', { cx: x, cy: y, r: i === pts.length - 1 ? 7 : 5, fill: DOT[p.state] || 'var(--mut)' },
      svg('title', {}, `${p.state}${p.rollback ? ' (rollback)' : ''}: ${p.rev}${p.subject ? ' — ' + p.subject : ''}${why}${p.at ? ' (' + p.at + ')' : ''}`)));
    if (pts.length <= 8 || i === 0 || i === pts.length - 1)
      g.append(svg('text', { x, y: y + 22, 'text-anchor': pts.length === 1 || i === 0 ? 'start' : i === pts.length - 1 ? 'end' : 'middle' },
        short(p.rev).slice(0, 7) + (p.rollback ? ' ↺' : '') + (p.state === 'superseded' ? '' : ' ' + p.state)));
  });
  const last = [...pts].reverse().find(p => p.why);
  const fail = last && h('details', { class: 'failure' },
    h('summary', { class: 'bad' }, short(last.rev).slice(0, 7), ' ', last.state, ': ', last.why.reason, ' ', last.why.object,
      last.why.container ? ' container ' + last.why.container : '', last.why.exitCode != null ? ' exit ' + last.why.exitCode : ''),
    h('div', { class: 'muted' }, last.why.message),
    (last.why.logs || []).length ? h('pre', { class: 'log' }, last.why.logs.join('\n')) : '');
  return h('div', { class: 'timeline-box', 'data-revisions': String(pts.length) }, g, fail || '', note);
}

// --- workloads ---
function owner(p) {
  const o = (p.metadata.ownerReferences || [])[0];
  if (o) return o.kind + '/' + o.name;
  const l = p.metadata.labels || {};
  if (l['job-name']) return 'Job/' + l['job-name'];
  return '';
}

function usageOf(p, c) {
  const u = S.usage && S.usage.containers;
  return u ? u.find(x => x.namespace === p.metadata.namespace && x.pod === p.metadata.name && x.container === c) : null;
}

function spark(vals, cls, label) {
  const v = vals.filter(x => x != null);
  if (v.length < 2) return null;
  const max = Math.max(...v) || 1, W = 80, H = 20, n = vals.length;
  const pts = [];
  vals.forEach((x, i) => { if (x != null) pts.push(`${(i / (n - 1) * W).toFixed(1)},${(H - 1 - x / max * (H - 2)).toFixed(1)}`); });
  return svg('svg', { class: 'spark ' + cls, viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': label },
    svg('polyline', { points: pts.join(' '), stroke: 'currentColor' }), svg('title', {}, label));
}

function usageCell(p) {
  return (p.spec?.containers || []).map(c => {
    const u = usageOf(p, c.name);
    if (!u || !u.points.length) return h('div', {}, muted(c.name + ': no samples yet'));
    const last = u.points[u.points.length - 1];
    const cpu = u.points.map(x => x[1]), mem = u.points.map(x => x[2]);
    const mins = Math.round(u.points.length * (S.usage.intervalSeconds || 10) / 60);
    return h('div', { class: 'usage', 'data-container': c.name },
      (p.spec.containers.length > 1 ? muted(c.name + ' ') : ''),
      h('span', { class: 'use' }, spark(cpu, 'info', `CPU of ${c.name}, last ${mins} min`), last[1] == null ? '…' : Math.round(last[1]) + 'm'),
      h('span', { class: 'use' }, spark(mem, 'ok', `memory of ${c.name}, last ${mins} min`), bytes(last[2])));
  });
}

function podReason(p) {
  const st = p.status || {};
  for (const cs of st.containerStatuses || []) {
    const w = cs.state && cs.state.waiting, t = cs.state && cs.state.terminated, lt = cs.lastState && cs.lastState.terminated;
    if (w && w.reason) return [w.reason, w.message];
    if (t && t.reason) return [t.reason + (t.exitCode != null ? ' (' + t.exitCode + ')' : ''), t.message];
    if (lt && lt.reason) return ['last: ' + lt.reason + ' (' + lt.exitCode + ')', lt.message];
  }
  const c = (st.conditions || []).find(c => c.status === 'False' && (c.reason || c.message));
  return c ? [c.reason || c.type, c.message] : [st.reason || '', st.message];
}

function phasePill(ph, terminating) {
  if (terminating) return pill('warn', 'Terminating');
  const cls = { Running: 'ok', Succeeded: 'info', Failed: 'bad', Pending: 'wait' }[ph] || 'wait';
  return pill(cls, ph || 'Pending');
}

function podRow(p) {
  const st = p.status || {};
  const cs = st.containerStatuses || [];
  const ncont = (p.spec?.containers || []).length;
  const ready = cs.filter(c => c.ready).length;
  const restarts = cs.reduce((a, c) => a + (c.restartCount || 0), 0);
  const [reason, msg] = podReason(p);
  const ports = (p.spec?.containers || []).flatMap(c => (c.ports || []).map(pt =>
    (pt.hostPort ? pt.hostPort + '→' : '') + pt.containerPort + (pt.protocol && pt.protocol !== 'TCP' ? '/' + pt.protocol : '')));
  const logs = (p.spec?.containers || []).map(c =>
    h('button', { type: 'button', title: 'log of ' + c.name, onclick: () => openLog(p, c.name) }, ncont > 1 ? c.name : 'log'));
  return h('tr', { 'data-pod': nsName(p.metadata), 'data-phase': st.phase || 'Pending' },
    h('td', {}, mono(nsName(p.metadata))),
    h('td', {}, phasePill(st.phase, p.metadata.deletionTimestamp)),
    h('td', { class: ready === ncont && ncont ? 'ok' : 'warn' }, ready + '/' + ncont),
    h('td', { class: restarts ? 'warn' : '' }, restarts),
    h('td', { class: 'wrap', title: msg || '' }, reason ? h('span', { class: /Error|BackOff|OOM|Fail|Unschedulable/.test(reason) ? 'bad' : '' }, reason) : '', msg ? h('div', { class: 'muted' }, String(msg).slice(0, 300)) : ''),
    h('td', {}, since(st.startTime || p.metadata.creationTimestamp)),
    h('td', {}, mono(st.podIP || '')),
    h('td', {}, mono(ports.join(' '))),
    h('td', {}, usageCell(p)),
    h('td', {}, logs));
}

function renderWorkloads() {
  const groups = new Map();
  for (const d of sorted('Deployment')) groups.set('Deployment/' + d.metadata.name + '@' + d.metadata.namespace, { d, pods: [] });
  const loose = [];
  for (const p of sorted('Pod')) {
    const o = owner(p);
    const gk = o && o + '@' + p.metadata.namespace;
    if (o && groups.has(gk)) groups.get(gk).pods.push(p);
    else if (o) groups.set(gk, { title: o, pods: [p] });
    else loose.push(p);
  }
  const head = ['Pod', 'Phase', 'Ready', 'Restarts', 'Reason', 'Age', 'IP', 'Ports', 'CPU · Memory', 'Logs'];
  const out = [];
  for (const [, g] of groups) {
    let title;
    if (g.d) {
      const ds = g.d.status || {}, want = g.d.spec?.replicas ?? 1;
      const ok = (ds.readyReplicas || 0) >= want;
      const prog = (ds.conditions || []).find(c => c.type === 'Progressing');
      title = [h('h3', {}, 'Deployment ', mono(nsName(g.d.metadata))),
        pill(ok ? 'ok' : 'warn', (ds.readyReplicas || 0) + '/' + want + ' ready'),
        muted((ds.updatedReplicas || 0) + ' updated · ' + (g.d.spec?.strategy?.type || 'RollingUpdate')),
        prog && prog.reason ? muted(prog.reason) : ''];
    } else {
      title = [h('h3', {}, g.title)];
    }
    out.push(h('div', { class: 'group' }, h('div', { class: 'group-h' }, title),
      g.pods.length ? table(head, g.pods.map(podRow)) : muted('no pods')));
  }
  if (loose.length) out.push(h('div', { class: 'group' }, h('div', { class: 'group-h' }, h('h3', {}, 'Pods')), table(head, loose.map(podRow))));
  fill('workloads', out.length ? out : muted('nothing runs here yet'));
}

// Ready endpoints as berth programs them: ready pods the selector matches.
function endpoints(svc) {
  const sel = svc.spec?.selector;
  if (!sel || !Object.keys(sel).length) return [];
  const out = [];
  for (const p of S.objs.Pod.values()) {
    if (p.metadata.namespace !== svc.metadata.namespace || !p.status?.podIP) continue;
    const l = p.metadata.labels || {};
    if (!Object.entries(sel).every(([k, v]) => l[k] === v)) continue;
    if (!(p.status.conditions || []).some(c => c.type === 'Ready' && c.status === 'True')) continue;
    for (const sp of svc.spec.ports || []) {
      let tp = sp.targetPort ?? sp.port;
      if (typeof tp === 'string') {
        const cp = (p.spec?.containers || []).flatMap(c => c.ports || []).find(x => x.name === tp);
        tp = cp ? cp.containerPort : tp;
      }
      out.push(p.status.podIP + ':' + tp);
    }
  }
  return out.sort();
}

function renderServices() {
  const rows = sorted('Service').map(s => {
    const eps = endpoints(s);
    return h('tr', { 'data-service': nsName(s.metadata) },
      h('td', {}, mono(nsName(s.metadata))),
      h('td', {}, s.spec?.type || 'ClusterIP'),
      h('td', {}, mono(s.spec?.clusterIP || '')),
      h('td', {}, mono((s.spec?.ports || []).map(p => p.port + '→' + (p.targetPort ?? p.port) + (p.nodePort ? ' :' + p.nodePort : '')).join(' '))),
      h('td', { class: 'wrap' }, eps.length ? mono(eps.join(' ')) : h('span', { class: 'warn' }, 'none ready')));
  });
  fill('services', rows.length ? table(['Service', 'Type', 'Cluster IP', 'Ports', 'Ready endpoints'], rows) : muted('no services'));
}

function renderVolumes() {
  const rows = sorted('Volume').map(v => {
    const st = v.status || {};
    return h('tr', {},
      h('td', {}, mono(nsName(v.metadata))),
      h('td', {}, st.phase || ''),
      h('td', {}, st.usedBytes != null ? bytes(st.usedBytes) : muted('…')),
      h('td', {}, v.spec?.reclaimPolicy || ''),
      h('td', { class: 'wrap' }, (st.usedBy || []).join(', ')));
  });
  fill('volumes', rows.length ? table(['Volume', 'Phase', 'Size', 'Reclaim', 'Used by'], rows) : muted('no volumes'));
}

function renderEvents() {
  const evs = [...S.objs.Event.values()]
    .sort((a, b) => Date.parse(b.lastTimestamp || 0) - Date.parse(a.lastTimestamp || 0)).slice(0, 60);
  fill('events', evs.length ? table(['When', 'Type', 'Reason', 'Object', 'Message'], evs.map(e => h('tr', {},
    h('td', {}, since(e.lastTimestamp) + (e.count > 1 ? ' (×' + e.count + ')' : '')),
    h('td', {}, e.type === 'Warning' ? pill('bad', 'Warning') : muted(e.type)),
    h('td', {}, e.reason),
    h('td', {}, mono(e.involvedObject.kind + ' ' + nsName(e.involvedObject))),
    h('td', { class: 'wrap' }, e.message)))) : muted('no events'));
}

// --- logs: tail and follow through the API's log endpoint ---
let logCtrl = null;
let logTarget = null;
const LOG_MAX = 512 * 1024;
function openLog(p, c) {
  logTarget = { ns: p.metadata.namespace, pod: p.metadata.name, c };
  $('logs').hidden = false;
  $('logtitle').textContent = nsName(p.metadata) + ' · ' + c;
  loadLog();
}
async function loadLog() {
  if (logCtrl) logCtrl.abort();
  if (!logTarget) return;
  const ctl = (logCtrl = new AbortController());
  const pre = $('logtext');
  pre.textContent = '';
  const q = new URLSearchParams({ container: logTarget.c, tailLines: $('logtail').value });
  // the previous run has ended: nothing to follow
  if ($('logprevious').checked) q.set('previous', 'true');
  else if ($('logfollow').checked) q.set('follow', 'true');
  const url = `/api/v1/namespaces/${encodeURIComponent(logTarget.ns)}/pods/${encodeURIComponent(logTarget.pod)}/log?${q}`;
  try {
    const r = await fetch(url, { cache: 'no-store', signal: ctl.signal });
    if (!r.ok) {
      // the API's Status message says why (e.g. no previous run, a container still waiting to start)
      const body = await r.text();
      let msg = body.slice(0, 500);
      try { msg = JSON.parse(body).message || msg; } catch (e) { /* not JSON */ }
      pre.textContent = 'log: HTTP ' + r.status + ': ' + msg;
      return;
    }
    const rd = r.body.getReader();
    const dec = new TextDecoder();
    for (;;) {
      const { value, done } = await rd.read();
      if (done) break;
      const stick = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 20;
      let t = pre.textContent + dec.decode(value, { stream: true });
      if (t.length > LOG_MAX) t = t.slice(t.length - LOG_MAX);
      pre.textContent = t;
      if (stick) pre.scrollTop = pre.scrollHeight;
    }
  } catch (e) { /* closed, or the agent went away */ }
}
function closeLog() { if (logCtrl) logCtrl.abort(); logCtrl = null; logTarget = null; $('logs').hidden = true; }

document.addEventListener('DOMContentLoaded', () => {
  $('logclose').addEventListener('click', closeLog);
  $('logtail').addEventListener('change', loadLog);
  $('logfollow').addEventListener('change', loadLog);
  $('logprevious').addEventListener('change', loadLog);
  setInterval(schedule, 10000); // ages and uptimes move on
  connect();
});
