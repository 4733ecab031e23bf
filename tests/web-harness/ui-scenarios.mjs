#!/usr/bin/env node
// dagctl's web UI in real Chromium, signed in through a real OpenID provider (oidc-provider.mjs).
// Run by dagctl/tests/browser.rs, which starts both servers:
//
//   node ui-scenarios.mjs --base http://127.0.0.1:P --shots DIR --admin-password PW
//
// Scenarios (each check throws with what it saw; the last line on success is "browser scenarios passed"):
//   1. alice (IdP group dagctl-admins) opens /dags, is sent to /login, signs in through the IdP and lands
//      on the DAG list, which shows her as Admin and lists the DAGs and the import error with file:line.
//   2. alice triggers `hello-dagctl` with a conf through the form; the run page shows it reach success with
//      one gantt bar per task; the grid and the graph show it. Screenshots: dags, grid, graph, run.
//   3. alice opens the log of `live-logs`' task while it runs; lines appear without a reload and the viewer
//      notices the end. Screenshot: log. 3b. a second run's page follows the run through server-sent events
//      (`/api/v2/dagctl/runs/.../events`): the task row and the state badge change with no reload.
//   4. victor (dagctl-viewers) sees no trigger button or pause toggle; the trigger form is 403; the API
//      answers his session's PATCH (with a valid CSRF token) with 403; a form post without CSRF is refused.
//   5. nobody (no group) is refused with a clear message; a wrong IdP password stays at the IdP.
//   6. sign-out ends the session; the local admin signs in with the login form.
import fs from 'node:fs';
import path from 'node:path';
import { arg, check, launchChromium, idpLogin } from './browser.mjs';

const base = arg('base');
const shots = arg('shots');
const adminPassword = arg('admin-password');
const T = 20_000;

async function shot(page, name, mustShow) {
  const text = await page.locator('body').innerText({ timeout: T });
  for (const needle of mustShow) check(text.includes(needle), `${name} screenshot shows "${needle}"`);
  const file = path.join(shots, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true, timeout: T });
  check(fs.statSync(file).size > 5000, `${name}.png written (${fs.statSync(file).size} bytes)`);
}

async function ssoLogin(context, user, next = '/dags') {
  const page = await context.newPage();
  await page.goto(`${base}${next}`, { timeout: T });
  check(new URL(page.url()).pathname === '/login', `${user}: ${next} without a session goes to /login`);
  await page.click('#sso-login', { timeout: T });
  await idpLogin(page, user, `${user}-pw`, { timeoutMs: T });
  return page;
}

async function waitForText(page, selector, needle, ms, reload) {
  const until = Date.now() + ms;
  for (;;) {
    const text = await page.locator(selector).innerText({ timeout: T }).catch(() => '');
    if (text.includes(needle)) return text;
    if (Date.now() > until) throw new Error(`"${needle}" never appeared in ${selector} (last: ${text.slice(0, 300)})`);
    await page.waitForTimeout(400);
    if (reload) await page.reload({ timeout: T });
  }
}

const browser = await launchChromium();
try {
  // 1. SSO sign-in lands on the DAG list.
  const alice = await browser.newContext();
  const page = await ssoLogin(alice, 'alice');
  check(new URL(page.url()).pathname === '/dags', `alice lands on the DAG list (${page.url()})`);
  check((await page.locator('#whoami').innerText()) === 'alice', 'the header names alice');
  check((await page.locator('.who .role').innerText()) === 'Admin', 'alice is Admin (group dagctl-admins)');
  check(await page.locator('tr[data-dag-id="hello-dagctl"]').count() === 1, 'hello-dagctl is listed');
  const errors = await page.locator('#import-errors').innerText({ timeout: T });
  check(/broken\.yaml:\d+/.test(errors), `the import error shows file and line (${errors.split('\n')[1]})`);
  await shot(page, 'dags', ['DAGs', 'hello-dagctl', 'live-logs', 'Import errors', 'broken.yaml']);

  // 2. Trigger with conf; the run succeeds; grid and graph show it.
  await page.goto(`${base}/dags/hello-dagctl`, { timeout: T });
  await Promise.all([page.waitForURL('**/trigger', { timeout: T }), page.click('#trigger-button', { timeout: T })]);
  await page.fill('#conf', '{"greeting": "from the browser"}');
  await page.fill('#run_id', 'ui-run-1');
  await Promise.all([page.waitForURL('**/runs/ui-run-1', { timeout: T }), page.click('#trigger-submit', { timeout: T })]);
  check(page.url().endsWith('/dags/hello-dagctl/runs/ui-run-1'), `the trigger form leads to the run page (${page.url()})`);
  await waitForText(page, '#run-state', 'success', 60_000, true);
  check((await page.locator('body').innerText()).includes('from the browser'), 'the run page shows the conf');
  check(await page.locator('#gantt .span').count() === 4, 'the run page has a gantt bar for each of the 4 tasks');
  await shot(page, 'run', ['ui-run-1', 'success', 'greet', 'checks.read_xcom', 'Timeline']);
  await page.goto(`${base}/dags/hello-dagctl`, { timeout: T });
  check(await page.locator('table.grid a.cell.s-success').count() >= 4, 'the grid colours the successful tasks');
  await shot(page, 'grid', ['hello-dagctl', 'greet', 'checks.context', 'done', 'success']);
  await page.goto(`${base}/dags/hello-dagctl?view=graph`, { timeout: T });
  check(await page.locator('svg.graph g.node').count() === 4, 'the graph draws 4 nodes');
  check(await page.locator('svg.graph path.edge').count() === 4, 'the graph draws 4 edges');
  await shot(page, 'graph', ['greet', 'checks.read_xcom', 'done']);

  // 3. The log viewer follows a running task.
  await page.goto(`${base}/dags/live-logs/trigger`, { timeout: T });
  await page.fill('#run_id', 'live-1');
  await Promise.all([page.waitForURL('**/runs/live-1', { timeout: T }), page.click('#trigger-submit', { timeout: T })]);
  const logUrl = `${base}/dags/live-logs/runs/live-1/tasks/tick`;
  const until = Date.now() + 30_000;
  for (;;) {
    await page.goto(logUrl, { timeout: T });
    if ((await page.locator('#ti-state').innerText()) === 'running') break;
    if (Date.now() > until) throw new Error('live-logs.tick never started running');
    await page.waitForTimeout(300);
  }
  const first = await page.locator('#log-lines').innerText();
  check((await page.locator('#log-viewer').getAttribute('data-live')) === 'true', 'the viewer follows the running try');
  const later = await waitForText(page, '#log-lines', 'tick 6', 30_000, false);
  check(!first.includes('tick 6') && later.includes('tick 6'), 'new log lines appeared without a reload');
  await waitForText(page, '#follow-status', 'finished: success', 20_000, false);
  await shot(page, 'log', ['tick', 'tick 6', 'finished: success']);

  // 3b. The run page follows its run through server-sent events: no reload, no polling.
  await page.goto(`${base}/dags/live-logs/trigger`, { timeout: T });
  await page.fill('#run_id', 'live-2');
  await Promise.all([page.waitForURL('**/runs/live-2', { timeout: T }), page.click('#trigger-submit', { timeout: T })]);
  await page.evaluate(() => { window.__samePage = true; });
  check((await page.locator('#run-live').getAttribute('data-live')) === 'true', 'the run page follows a run that is not over');
  await waitForText(page, 'tr[data-task-id="tick"]', 'running', 30_000, false);
  await waitForText(page, '#run-state', 'success', 30_000, false);
  check(await page.evaluate(() => window.__samePage === true), 'the run page updated in place (no reload)');
  check((await page.locator('tr[data-task-id="tick"]').innerText()).includes('success'), 'the task row shows success');

  // 4. A Viewer reads but cannot change anything.
  const victorCtx = await browser.newContext();
  const victor = await ssoLogin(victorCtx, 'victor');
  check((await victor.locator('.who .role').innerText()) === 'Viewer', 'victor is Viewer (group dagctl-viewers)');
  check(await victor.locator('tr[data-dag-id="hello-dagctl"]').count() === 1, 'victor sees the DAG list');
  check(await victor.locator('tr[data-dag-id="hello-dagctl"] form').count() === 0, 'victor has no pause toggle');
  await victor.goto(`${base}/dags/hello-dagctl`, { timeout: T });
  check(await victor.locator('#trigger-button').count() === 0, 'victor sees no trigger button');
  const form = await victor.goto(`${base}/dags/hello-dagctl/trigger`, { timeout: T });
  check(form.status() === 403, `victor's trigger form is 403 (${form.status()})`);
  const api = await victor.evaluate(async () => {
    const who = await (await fetch('/api/v2/dagctl/whoami')).json();
    const patch = await fetch('/api/v2/dags/hello-dagctl?update_mask=is_paused', {
      method: 'PATCH',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': who.csrf_token },
      body: JSON.stringify({ is_paused: true }),
    });
    const trigger = await fetch('/api/v2/dags/hello-dagctl/dagRuns', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': who.csrf_token },
      body: JSON.stringify({ conf: {} }),
    });
    const list = await fetch('/api/v2/dags');
    return { role: who.role, patch: patch.status, detail: (await patch.json()).detail, trigger: trigger.status, list: list.status };
  });
  check(api.role === 'Viewer' && api.list === 200, 'the API reads for victor');
  check(api.patch === 403 && /Viewer/.test(api.detail), `the API refuses victor's pause with 403 (${api.patch}: ${api.detail})`);
  check(api.trigger === 403, `the API refuses victor's trigger with 403 (${api.trigger})`);
  // victor, an SSO user without a password, makes an API token on /token and scripts with it.
  await victor.goto(`${base}/token`, { timeout: T });
  await Promise.all([victor.waitForLoadState('load', { timeout: T }), victor.click('#token-submit', { timeout: T })]);
  const apiToken = (await victor.locator('#api-token').innerText({ timeout: T })).trim();
  check(apiToken.split('.').length === 3, 'victor got an API token from the page');
  const scripted = await victor.request.get(`${base}/api/v2/dags`, { headers: { Authorization: `Bearer ${apiToken}` } });
  check(scripted.status() === 200, `victor's token reads the API (${scripted.status()})`);
  const scriptedPatch = await victor.request.patch(`${base}/api/v2/dags/hello-dagctl?update_mask=is_paused`, {
    headers: { Authorization: `Bearer ${apiToken}` },
    data: { is_paused: true },
  });
  check(scriptedPatch.status() === 403, `victor's token cannot pause (${scriptedPatch.status()})`);
  const noCsrf = await alice.request.post(`${base}/dags/hello-dagctl/pause`, { form: { paused: 'true' }, maxRedirects: 0 });
  check(noCsrf.status() === 403, `a form post without the CSRF token is refused (${noCsrf.status()})`);
  const apiNoCsrf = await alice.request.patch(`${base}/api/v2/dags/hello-dagctl?update_mask=is_paused`, { data: { is_paused: true } });
  check(apiNoCsrf.status() === 403, `an API change by session cookie without the CSRF header is refused (${apiNoCsrf.status()})`);

  // 4b. Pools are for Ops; users are for Admins.
  const olgaCtx = await browser.newContext();
  const olga = await ssoLogin(olgaCtx, 'olga', '/pools');
  check(new URL(olga.url()).pathname === '/pools', `olga lands on the page she asked for (${olga.url()})`);
  check((await olga.locator('.who .role').innerText()) === 'Op', 'olga is Op (group dagctl-ops)');
  await olga.fill('#pool-name', 'chain');
  await olga.fill('#pool-slots', '4');
  await olga.fill('#pool-description', 'at most 4 networks at once');
  await Promise.all([olga.waitForLoadState('load', { timeout: T }), olga.click('#pool-submit', { timeout: T })]);
  check(await olga.locator('tr[data-pool="chain"]').count() === 1, 'olga created the pool `chain`');
  await olga.fill('#pool-name', 'broken');
  // The form itself refuses negative slots; take that away to see the server refuse them too.
  await olga.evaluate(() => document.querySelector('#pool-slots').removeAttribute('min'));
  await olga.fill('#pool-slots', '-3');
  await Promise.all([olga.waitForLoadState('load', { timeout: T }), olga.click('#pool-submit', { timeout: T })]);
  check((await olga.locator('#pool-error').innerText()).includes('Slots'), 'a bad slot count is explained');
  check(await olga.locator('nav a[href="/users"]').count() === 0, 'olga has no Users page in the menu');
  const olgaUsers = await olga.goto(`${base}/users`, { timeout: T });
  check(olgaUsers.status() === 403, `the Users page is 403 for olga (${olgaUsers.status()})`);
  const umaCtx = await browser.newContext();
  const uma = await ssoLogin(umaCtx, 'uma', '/pools');
  check((await uma.locator('.who .role').innerText()) === 'User', 'uma is User (group dagctl-users)');
  check(await uma.locator('tr[data-pool="chain"]').count() === 1, 'uma sees the pools');
  check(await uma.locator('#pool-form').count() === 0, 'uma has no pool form');
  const umaPost = await uma.evaluate(async () => {
    const csrf = document.querySelector('main').dataset.csrf;
    const body = new URLSearchParams({ csrf_token: csrf, name: 'sneaky', slots: '1' });
    return (await fetch('/pools', { method: 'POST', body })).status;
  });
  check(umaPost === 403, `uma's pool form post is refused on the server (${umaPost})`);
  await page.goto(`${base}/users`, { timeout: T });
  const users = await page.locator('#user-list').innerText({ timeout: T });
  check(users.includes('alice') && users.includes('olga') && users.includes('admin'), 'alice (Admin) sees the users');
  await shot(page, 'users', ['Users', 'alice', 'Admin', 'oidc', 'local']);

  // 5. No group, no entry; a wrong IdP password stays at the IdP.
  const nobodyCtx = await browser.newContext();
  const nobody = await ssoLogin(nobodyCtx, 'nobody');
  check(new URL(nobody.url()).pathname === '/login', 'nobody is sent back to the login page');
  check((await nobody.locator('#login-error').innerText()).includes('not in any group'), 'and told why');
  const wrongCtx = await browser.newContext();
  const wrong = await wrongCtx.newPage();
  await wrong.goto(`${base}/login`, { timeout: T });
  await wrong.click('#sso-login', { timeout: T });
  const refusal = await idpLogin(wrong, 'alice', 'not-her-password', { timeoutMs: T, expectRefusal: true });
  check(/Invalid/.test(refusal), `a wrong IdP password is refused at the IdP (${refusal})`);

  // 6. Sign-out, then the local admin with the form.
  await page.goto(`${base}/dags`, { timeout: T });
  await Promise.all([page.waitForURL('**/login', { timeout: T }), page.click('#logout', { timeout: T })]);
  check(new URL(page.url()).pathname === '/login', 'sign-out goes to /login');
  await page.goto(`${base}/dags`, { timeout: T });
  check(new URL(page.url()).pathname === '/login', 'after sign-out the DAG list needs a login again');
  await page.fill('#username', 'admin');
  await page.fill('#password', 'wrong-password');
  await Promise.all([page.waitForLoadState('load', { timeout: T }), page.click('#login-submit', { timeout: T })]);
  check((await page.locator('#login-error').innerText()).includes('Wrong'), 'a wrong local password is refused');
  await page.fill('#username', 'admin');
  await page.fill('#password', adminPassword);
  await Promise.all([page.waitForURL('**/dags', { timeout: T }), page.click('#login-submit', { timeout: T })]);
  check(new URL(page.url()).pathname === '/dags', 'the local admin signs in with the form');
  check((await page.locator('.who .role').innerText()) === 'Admin', 'the local admin is Admin');
  console.log('browser scenarios passed');
} finally {
  await browser.close();
}
