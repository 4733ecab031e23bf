#!/usr/bin/env node
// The KPI pages in real Chromium: the local admin signs in with the form, follows the run page's "KPIs" link to
// the run's report (charts drawn as SVG lines and bars with real extent, the summary table filled) and the DAG
// page's "KPI trend" link to the trend (a chart per figure over the runs, the regression named). Run by
// dagctl/tests/browser.rs:
//
//   node kpi-pages.mjs --base http://127.0.0.1:P --admin-password PW --dag DAG --run RUN --shots DIR
//
// The last line on success is "kpi pages passed".
import fs from 'node:fs';
import path from 'node:path';
import { arg, check, launchChromium } from './browser.mjs';

const base = arg('base');
const dag = arg('dag');
const run = arg('run');
const shots = arg('shots');
const T = 30_000;

// Every chart's drawn lines: how many, and the widest line's extent in pixels.
const drawn = (page) => page.evaluate(() => {
  const charts = [...document.querySelectorAll('svg.chart')];
  return charts.map((svg) => {
    const lines = [...svg.querySelectorAll('path.line')].filter((p) => (p.getAttribute('d') || '').includes('L'));
    const bars = [...svg.querySelectorAll('rect.bar')].filter((r) => Number(r.getAttribute('height')) > 0);
    const widest = Math.max(0, ...lines.map((p) => p.getBoundingClientRect().width));
    return { title: svg.getAttribute('aria-label'), lines: lines.length, bars: bars.length, widest };
  });
});

const browser = await launchChromium();
try {
  const page = await (await browser.newContext({ viewport: { width: 1400, height: 1600 } })).newPage();
  const runPage = `${base}/dags/${encodeURIComponent(dag)}/runs/${encodeURIComponent(run)}`;
  await page.goto(runPage, { timeout: T });
  check(new URL(page.url()).pathname === '/login', 'the UI needs a login');
  await page.fill('#username', 'admin');
  await page.fill('#password', arg('admin-password'));
  await Promise.all([page.waitForURL(`**/runs/**`, { timeout: T }), page.click('#login-submit', { timeout: T })]);
  await Promise.all([page.waitForURL('**/kpis', { timeout: T }), page.click('#run-kpis', { timeout: T })]);
  check(page.url().endsWith(`/runs/${encodeURIComponent(run)}/kpis`), `the run page links to its KPIs (${page.url()})`);
  const title = await page.locator('h1').first().innerText({ timeout: T });
  check(title.includes(dag) && title.includes(run), `the report is the run's (${title})`);
  const charts = await drawn(page);
  const withLines = charts.filter((c) => c.lines > 0 && c.widest > 100);
  check(withLines.length >= 3, `at least three charts draw lines wider than 100 px (${withLines.map((c) => c.title).join(', ')})`);
  const summary = await page.locator('table').first().innerText({ timeout: T });
  check(summary.includes('load'), 'the summary table lists the load');
  const regression = await page.locator('p.bad').first().innerText({ timeout: T });
  check(regression.includes('error_rate'), `the report names the regression (${regression.slice(0, 80)})`);
  await page.screenshot({ path: path.join(shots, 'kpi-run.png'), fullPage: true, timeout: T });
  check(fs.statSync(path.join(shots, 'kpi-run.png')).size > 20000, 'kpi-run.png written');

  await page.goto(`${base}/dags/${encodeURIComponent(dag)}`, { timeout: T });
  await Promise.all([page.waitForURL('**/kpis', { timeout: T }), page.click('#dag-kpi-trend', { timeout: T })]);
  check(new URL(page.url()).pathname === `/dags/${dag}/kpis`, 'the DAG page links to its KPI trend');
  const trend = await drawn(page);
  const trendLines = trend.filter((c) => c.lines > 0 && c.widest > 100);
  check(trendLines.length >= 3, `trend charts draw lines over the runs (${trendLines.length} of ${trend.length})`);
  check(trend.some((c) => (c.title || '').includes('Error rate: REGRESSION')), 'the error-rate chart is titled a regression');
  await page.screenshot({ path: path.join(shots, 'kpi-trend.png'), fullPage: true, timeout: T });
  check(fs.statSync(path.join(shots, 'kpi-trend.png')).size > 20000, 'kpi-trend.png written');
  console.log('kpi pages passed');
} finally {
  await browser.close();
}
