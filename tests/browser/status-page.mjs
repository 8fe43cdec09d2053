// Drives Debian's Chromium (headless) against a running berth agent's status
// page; started by tests/tests/status_page.rs, which owns the agent.
//
// env: BERTH_URL (http://127.0.0.1:PORT), BERTH_TOKEN, BERTH_MANIFESTS (the
// agent's watched dir), BERTH_ARTIFACTS (screenshots go here),
// BERTH_RESTART_FLAG (a file this script creates to ask the test to kill -9
// and restart the agent; the test removes it when the agent is back).
// Prints one line `RESULT {json}` and exits 0 when every check passed.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const env = k => { const v = process.env[k]; if (!v) throw new Error(`${k} is not set`); return v; };
const base = env('BERTH_URL');
const token = env('BERTH_TOKEN');
const manifests = env('BERTH_MANIFESTS');
const artifacts = env('BERTH_ARTIFACTS');
const restartFlag = env('BERTH_RESTART_FLAG');
const origin = new URL(base).origin;
fs.mkdirSync(artifacts, { recursive: true });

const log = (...a) => console.log(new Date().toISOString().slice(11, 23), ...a);
function writeManifest(name, text) {
  const tmp = path.join(manifests, `.${name}.tmp`);
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, path.join(manifests, name));
}
const probePod = `apiVersion: v1
kind: Pod
metadata:
  name: page-probe
  labels: {app: page-probe}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: berth.local/busybox:1.36
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo page-probe-says-hi; exec sleep 3600"]
`;

const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-chromium-'));
const ctx = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  viewport: { width: 1280, height: 900 },
  httpCredentials: { username: 'operator', password: token, origin },
  timeout: 30000,
});
const consoleErrors = [];
const external = [];
const assets = {};
let phase = 'load';
const restartErrors = [];
ctx.on('request', r => {
  const u = r.url();
  if (!u.startsWith(origin + '/')) external.push(u);
});
const page = ctx.pages()[0] || await ctx.newPage();
page.on('console', m => {
  if (m.type() !== 'error') return;
  (phase === 'restart' ? restartErrors : consoleErrors).push(m.text());
});
page.on('pageerror', e => consoleErrors.push('pageerror: ' + e));
page.on('response', async r => {
  const t = r.request().resourceType();
  if (['document', 'script', 'stylesheet'].includes(t) && r.status() === 200) {
    try { assets[new URL(r.url()).pathname] = (await r.body()).length; } catch { /* navigated away */ }
  }
});

async function step(name, f) {
  const t = Date.now();
  try {
    const r = await f();
    log(`ok   ${name} (${Date.now() - t} ms)`);
    return r;
  } catch (e) {
    log(`FAIL ${name}: ${e.message.split('\n')[0]}`);
    await page.screenshot({ path: path.join(artifacts, 'status-page-failure.png'), fullPage: true }).catch(() => {});
    const text = await page.evaluate(() => document.body.innerText).catch(() => '');
    log('page text at failure:\n' + text.slice(0, 4000));
    await ctx.close();
    process.exit(1);
  }
}
const check = (cond, msg) => { if (!cond) throw new Error(msg); };

const result = {};
const t0 = Date.now();
await step('page loads', async () => {
  const resp = await page.goto(base + '/', { waitUntil: 'load', timeout: 30000 });
  check(resp.status() === 200, `GET / answered ${resp.status()}`);
});
await step('first render with the agent\'s data', async () => {
  await page.waitForSelector('body[data-ready="1"]', { timeout: 15000 });
  result.firstDataMs = Date.now() - t0;
  const perf = await page.evaluate(() => {
    const n = performance.getEntriesByType('navigation')[0];
    const fcp = performance.getEntriesByType('paint').find(p => p.name === 'first-contentful-paint');
    return { dcl: n && Math.round(n.domContentLoadedEventEnd), fcp: fcp && Math.round(fcp.startTime) };
  });
  result.domContentLoadedMs = perf.dcl;
  result.firstContentfulPaintMs = perf.fcp;
});
await step('the example\'s pods run (2 web replicas, worker)', async () => {
  await page.waitForFunction(() => {
    const run = [...document.querySelectorAll('tr[data-pod]')].filter(r => r.dataset.phase === 'Running').map(r => r.dataset.pod);
    return run.filter(n => n.startsWith('web-')).length === 2 && run.includes('worker');
  }, null, { timeout: 120000, polling: 250 });
  const groups = await page.$$eval('#workloads h3', hs => hs.map(h => h.textContent));
  check(groups.some(g => g.includes('Deployment') && g.includes('web')), `pods grouped by Deployment: ${groups}`);
});
await step('node, source and revision panel', async () => {
  const node = await page.textContent('#node');
  check(/kernel/.test(node) && /cgroups/.test(node) && /berth \d/.test(node), `node panel: ${node}`);
  const src = await page.textContent('#sources');
  check(src.includes('directory') && src.includes(manifests), `sources panel: ${src}`);
  check(/One revision so far/.test(src) && /healthy|progressing/.test(src), 'a single revision: its rollout state, and a note that history fills up');
  check(await page.$('#sources svg.timeline'), 'the revision timeline is drawn');
});
await step('service endpoints and volume', async () => {
  await page.waitForFunction(() => {
    const r = document.querySelector('tr[data-service="web"]');
    return r && (r.textContent.match(/:8080/g) || []).length === 2;
  }, null, { timeout: 30000 });
  const vol = await page.textContent('#volumes');
  check(vol.includes('worker-data'), `volumes: ${vol}`);
});
await step('a manifest change shows up live (no reload), with a second revision', async () => {
  await page.evaluate(() => { window.__sameDocument = true; });
  writeManifest('page-probe.yaml', probePod);
  await page.waitForSelector('tr[data-pod="page-probe"][data-phase="Running"]', { timeout: 60000 });
  check(await page.evaluate(() => window.__sameDocument === true), 'the page was reloaded');
  await page.waitForSelector('#sources [data-revisions="2"]', { timeout: 10000 });
});
await step('logs: tail and follow', async () => {
  await page.click('tr[data-pod="page-probe"] button');
  await page.waitForFunction(() => document.getElementById('logtext').textContent.includes('page-probe-says-hi'), null, { timeout: 15000 });
  await page.click('#logclose');
});
await step('CPU and memory sparklines from the cgroups', async () => {
  await page.waitForSelector('tr[data-pod="worker"] svg.spark', { timeout: 45000 });
  result.sparklines = await page.$$eval('svg.spark', s => s.length);
});
await step('no console errors, no request outside the agent', async () => {
  check(consoleErrors.length === 0, `console errors: ${consoleErrors.join(' | ')}`);
  check(external.length === 0, `external requests: ${external.join(' ')}`);
});
await page.screenshot({ path: path.join(artifacts, 'status-page.png'), fullPage: true });

await step('keeps working across an agent restart (kill -9)', async () => {
  phase = 'restart';
  fs.writeFileSync(restartFlag, 'restart\n');
  await page.waitForFunction(() => document.getElementById('conn').textContent !== 'live', null, { timeout: 30000, polling: 100 });
  await page.waitForFunction(() => document.getElementById('conn').textContent === 'live', null, { timeout: 90000, polling: 250 });
  check(!fs.existsSync(restartFlag), 'the test restarted the agent');
  phase = 'after';
  fs.rmSync(path.join(manifests, 'page-probe.yaml'));
  await page.waitForFunction(() => !document.querySelector('tr[data-pod="page-probe"]'), null, { timeout: 60000 });
  check(await page.evaluate(() => window.__sameDocument === true), 'the page was reloaded');
  check(consoleErrors.length === 0, `console errors: ${consoleErrors.join(' | ')}`);
  check(external.length === 0, `external requests: ${external.join(' ')}`);
});
await step('fits a phone screen', async () => {
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(300);
  const w = await page.evaluate(() => document.documentElement.scrollWidth);
  check(w <= 391, `the page is ${w}px wide on a 390px screen`);
  await page.screenshot({ path: path.join(artifacts, 'status-page-phone.png'), fullPage: false });
});

result.assets = assets;
result.weightBytes = Object.values(assets).reduce((a, b) => a + b, 0);
result.restartConsoleErrors = restartErrors.length;
result.browser = ctx.browser() ? ctx.browser().version() : 'chromium';
await ctx.close();
fs.rmSync(profile, { recursive: true, force: true });
console.log('RESULT ' + JSON.stringify(result));
