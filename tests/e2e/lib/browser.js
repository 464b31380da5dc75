'use strict';
// Debian's Chromium driven by playwright-core; Playwright never downloads a browser.
process.env.PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD = '1';
const { chromium } = require('playwright-core');

const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

/** Launches Chromium (Playwright gives it a fresh temporary --user-data-dir). */
async function launchBrowser() {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS, timeout: 30000 });
}

/**
 * A fresh browser context (own cookies) that may only reach 127.0.0.1:
 * anything else is aborted at once instead of waiting on a network that is not there.
 */
async function newContext(browser) {
  const context = await browser.newContext();
  context.setDefaultTimeout(15000);
  context.setDefaultNavigationTimeout(15000);
  await context.route((url) => url.hostname !== '127.0.0.1', (route) => route.abort('blockedbyclient'));
  return context;
}

/** Fills and submits the IdP login form on `page`; resolves after the next navigation settles. */
async function submitLogin(page, username, password) {
  await page.waitForSelector('input[name=username]');
  await page.fill('input[name=username]', username);
  await page.fill('input[name=password]', password);
  const [resp] = await Promise.all([
    page.waitForNavigation({ waitUntil: 'load' }),
    page.click('#submit'),
  ]);
  return resp;
}

module.exports = { launchBrowser, newContext, submitLogin, CHROMIUM };
