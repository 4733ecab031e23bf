#!/usr/bin/env node
// The network page in real Chromium: the local admin signs in with the form, opens /networks/NAME while
// `dagctl net watch --store` samples the network, and the charts draw and move (the plotted points grow), the
// node table fills in, and the alert appended to a node's log is listed. Run by dagctl/tests/browser.rs:
//
//   node network-charts.mjs --base http://127.0.0.1:P --admin-password PW --network NAME --shots DIR
//
// The last line on success is "network charts passed".
import fs from 'node:fs';
import path from 'node:path';
import { arg, check, launchChromium } from './browser.mjs';

const base = arg('base');
const network = arg('network');
const shots = arg('shots');
const T = 20_000;

const browser = await launchChromium();
try {
  const page = await (await browser.newContext({ viewport: { width: 1280, height: 1400 } })).newPage();
  await page.goto(`${base}/networks/${encodeURIComponent(network)}`, { timeout: T });
  check(new URL(page.url()).pathname === '/login', 'the network page needs a login');
  await page.fill('#username', 'admin');
  await page.fill('#password', arg('admin-password'));
  await Promise.all([page.waitForURL(`**/networks/${network}`, { timeout: T }), page.click('#login-submit', { timeout: T })]);
  check(new URL(page.url()).pathname === `/networks/${network}`, 'after the login the network page opens');

  const points = () => page.evaluate(() => (window.dagctlCharts && window.dagctlCharts.head ? window.dagctlCharts.head.data[0].length : -1));
  await page.waitForFunction(() => window.dagctlCharts && window.dagctlCharts.head && window.dagctlCharts.head.data[0].length >= 2, null, { timeout: T });
  const canvases = await page.locator('#charts .plot canvas').count();
  check(canvases === 11, `every chart draws on a canvas (${canvases})`);
  const before = await points();
  await page.waitForTimeout(3500);
  const after = await points();
  check(after > before, `the head chart moves: ${before} points, then ${after}`);
  const heads = await page.evaluate(() => window.dagctlCharts.head.data[1].filter((v) => v !== null));
  check(heads.length > 0 && heads.every((v, i) => i === 0 || v >= heads[i - 1]), `node-1's plotted heads never go back (${heads.slice(-3)})`);
  const cpuSeries = await page.evaluate(() => window.dagctlCharts.cpu_percent.data.length);
  check(cpuSeries === 3, `the CPU chart has the time axis and one series per node (${cpuSeries})`);
  const up = await page.locator('#node-list tr[data-node="node-1"] .v-up').innerText({ timeout: T });
  check(up === 'yes', `the node table shows node-1 up (${up})`);
  const head = Number(await page.locator('#node-list tr[data-node="node-1"] .v-head').innerText({ timeout: T }));
  check(head > 0, `the node table shows node-1's head (${head})`);
  await page.waitForFunction(() => document.querySelector('#alert-list').innerText.includes('Served eth_call'), null, { timeout: T });
  const alerts = await page.locator('#alert-list').innerText({ timeout: T });
  check(alerts.includes('node-1') && alerts.includes('warn'), `the alert list shows node-1's warning (${alerts.split('\n')[1]})`);
  const file = path.join(shots, 'network.png');
  await page.screenshot({ path: file, fullPage: true, timeout: T });
  check(fs.statSync(file).size > 5000, `network.png written (${fs.statSync(file).size} bytes)`);
  console.log('network charts passed');
} finally {
  await browser.close();
}
