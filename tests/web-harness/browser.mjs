// Browser helpers for dagctl's web UI tests: playwright-core driving Debian's Chromium (no
// browser download), and a login on the test IdP's page (tests/web-harness/oidc-provider.mjs).
//
//   import { launchChromium, idpLogin } from './browser.mjs';
//   const browser = await launchChromium();
//   try {
//     const page = await (await browser.newContext()).newPage();   // one context per user
//     await page.goto(`${dagctl}/auth/oidc/login`);
//     await idpLogin(page, 'alice', 'alice-pw');                   // back on dagctl afterwards
//   } finally {
//     await browser.close();                                       // removes the temp profile too
//   }
//
// playwright-core comes from $DAGCTL_NODE_TOOLS (what scripts/install-node-tools.sh prints), else
// from an ordinary node_modules next to this file. The browser is $DAGCTL_CHROMIUM, default
// /usr/bin/chromium (scripts/ensure-chromium.sh installs it).
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

/** The value after `--name` on the command line (thrown if missing). */
export function arg(name) {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0 || !process.argv[i + 1]) throw new Error(`missing --${name}`);
  return process.argv[i + 1];
}

/** Throws unless `ok`; says what passed. */
export function check(ok, what) {
  if (!ok) throw new Error(`check failed: ${what}`);
  console.log(`ok: ${what}`);
}

const require = createRequire(path.join(path.resolve(process.env.DAGCTL_NODE_TOOLS || here), 'package.json'));

let playwright;
function playwrightCore() {
  playwright ??= require('playwright-core');
  return playwright;
}

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

// Launches headless Chromium and returns playwright's Browser. Each browser.newContext() is a
// separate cookie jar (one per user in a scenario). playwright's launch() gives Chromium a fresh
// temporary --user-data-dir of its own (it refuses one in args) and removes it on browser.close(),
// and also when Chromium dies or this process exits.
// options: { executablePath, timeoutMs (launch, default 60 s), slowMo, env }.
export async function launchChromium(options = {}) {
  const executablePath = options.executablePath || process.env.DAGCTL_CHROMIUM || '/usr/bin/chromium';
  if (!fs.existsSync(executablePath)) {
    throw new Error(`no Chromium at ${executablePath} (run scripts/ensure-chromium.sh, or set DAGCTL_CHROMIUM)`);
  }
  const { chromium } = playwrightCore();
  return chromium.launch({
    executablePath,
    headless: true,
    chromiumSandbox: false,
    args: CHROMIUM_ARGS,
    timeout: options.timeoutMs ?? 60_000,
    slowMo: options.slowMo,
    env: { ...process.env, ...options.env },
  });
}

// On the test IdP's login page (the page has been sent there by the app), signs in as `user`.
// Waits for the redirect away from the IdP and returns the URL the page ended on.
// A refused login throws, with the page's error text, unless options.expectRefusal is set: then
// it returns that text (e.g. 'Invalid login or password.') and throws if the login succeeded.
// options: { timeoutMs (default 15 s), expectRefusal }.
export async function idpLogin(page, user, password, options = {}) {
  const timeout = options.timeoutMs ?? 15_000;
  const loginInput = page.locator('input[name="login"]');
  await loginInput.waitFor({ state: 'visible', timeout });
  const idp = new URL(page.url()).origin;
  await loginInput.fill(user, { timeout });
  await page.locator('input[name="password"]').fill(password, { timeout });
  const [response] = await Promise.all([
    page.waitForResponse(
      (r) => r.request().method() === 'POST' && new URL(r.url()).origin === idp && /^\/interaction\/[^/]+\/login$/.test(new URL(r.url()).pathname),
      { timeout },
    ),
    page.locator('button[type="submit"]').click({ timeout }),
  ]);

  if (response.status() === 401) {
    const error = page.locator('#login-error');
    await error.waitFor({ state: 'visible', timeout });
    const text = (await error.textContent({ timeout })).trim();
    if (options.expectRefusal) return text;
    throw new Error(`the IdP refused the login of ${user}: ${text}`);
  }
  if (response.status() !== 303) {
    throw new Error(`the IdP answered the login of ${user} with HTTP ${response.status()}: ${(await response.text()).slice(0, 500)}`);
  }
  await page.waitForURL(
    (u) => !(u.origin === idp && u.pathname.startsWith('/interaction/')) && !(u.origin === idp && u.pathname.startsWith('/auth')),
    { timeout, waitUntil: 'commit' },
  );
  if (options.expectRefusal) throw new Error(`the IdP accepted the login of ${user}, a refusal was expected`);
  return page.url();
}
