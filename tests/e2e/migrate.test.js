'use strict';
// Issue 13 end to end: the seed article's oauth2-proxy Helm values
// (tests/fixtures/migrate/values-oauth2-proxy.yaml) go through
// `authgate migrate`, with only what must change for this machine changed:
// the Keycloak URLs and client point at the suite's oidc-provider (same
// explicit endpoints, `skipDiscovery: true` kept), the `static://200`
// upstream becomes the nginx echo app (so the browser lands on it), and the
// listen and metrics addresses are free ports (alphaConfig `server` and
// `metricsServer`: with an alpha config oauth2-proxy takes them from
// there, not from flags). authgate then
// runs the generated config unchanged, and Chromium signs a user in on
// app.example.com (resolved to 127.0.0.1, so the migrated cookie domain
// `.example.com` applies): alice (group admins) lands on the app with the
// identity headers the values file injected, under oauth2-proxy's cookie
// name and domain; bob (not in admins) is refused, as oauth2-proxy would.
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync, spawnSync } = require('node:child_process');
const { describe } = require('node:test');
const assert = require('node:assert/strict');
const { chromium } = require('playwright-core');
const { startIdp } = require('./lib/idp');
const { startNginx, parseEcho } = require('./lib/nginx');
const { submitLogin, CHROMIUM } = require('./lib/browser');
const { start, tmpDir } = require('./lib/procs');
const { freePorts } = require('./lib/ports');
const { waitFor } = require('./lib/wait');
const { request } = require('./lib/http');
const { AUTHGATE_BIN, skipReason } = require('./lib/authgate');
const { stopAll, gate } = require('./lib/common');

const { it, before, after } = gate(skipReason());

const REPO_ROOT = path.resolve(__dirname, '..', '..');
const VALUES = path.join(REPO_ROOT, 'tests/fixtures/migrate/values-oauth2-proxy.yaml');
const KEYCLOAK_REALM = 'https://keycloak.example.com/identity/auth/realms/demo';
const APP_HOST = 'app.example.com';

/**
 * The fixture with the Keycloak realm and client replaced by oidc-provider's
 * (its endpoints: /auth, /token, /me, /jwks) and the static upstream by `upstreamUrl`.
 */
function adjustedValues(idp, upstreamUrl, port, metricsPort) {
  const text = fs.readFileSync(VALUES, 'utf8');
  const endpoints = [
    ['/protocol/openid-connect/auth', '/auth'],
    ['/protocol/openid-connect/token', '/token'],
    ['/protocol/openid-connect/userinfo', '/me'],
    ['/protocol/openid-connect/certs', '/jwks'],
    ['', ''],
  ];
  let out = text;
  for (const [from, to] of endpoints) {
    out = out.split(`${KEYCLOAK_REALM}${from}`).join(`${idp.issuer}${to}`);
  }
  out = out
    .replace(/clientID: oauth2-proxy\b/, `clientID: ${idp.clientId}`)
    .replace(/clientSecret: "[^"]*"/, `clientSecret: "${idp.clientSecret}"`)
    .replace(
      /      - id: static_200\n        path: \/\n        static: true\n        staticCode: 200\n/,
      `      - id: app\n        path: /\n        uri: ${upstreamUrl}\n`,
    );
  out = out.replace(/^  configData:\n/m, [
    '  configData:',
    '    server:',
    `      BindAddress: "127.0.0.1:${port}"`,
    '    metricsServer:',
    `      BindAddress: "127.0.0.1:${metricsPort}"`,
    '',
  ].join('\n'));
  assert.ok(out.includes(`127.0.0.1:${port}`), 'the bind address set');
  const settings = out.split('\n').filter((l) => !l.trim().startsWith('#')).join('\n');
  assert.ok(!settings.includes('keycloak.example.com'), 'every Keycloak URL replaced');
  assert.ok(!out.includes('static_200'), 'the static upstream replaced');
  return out;
}

describe('authgate migrate: the seed article values file, signed in with Chromium (issue 13)', () => {
  let nginx;
  let idp;
  let ag;
  let browser;
  let port;
  let migrated;
  let report;

  before(async () => {
    nginx = await startNginx();
    const [listenPort, metricsPort] = await freePorts(2);
    port = listenPort;
    idp = await startIdp({ redirectUris: [`http://${APP_HOST}:${port}/oauth2/callback`] });
    const dir = tmpDir('migrate');
    const values = path.join(dir, 'values.yaml');
    fs.writeFileSync(values, adjustedValues(idp, nginx.url, port, metricsPort));
    // No OAUTH2_PROXY_* variable of this environment may leak in.
    const run = spawnSync(AUTHGATE_BIN, ['migrate', '--helm-values', values], {
      encoding: 'utf8', env: { PATH: process.env.PATH },
    });
    assert.equal(run.status, 0, `migrate failed:\n${run.stderr}`);
    migrated = run.stdout;
    report = run.stderr;
    const configPath = path.join(dir, 'authgate.yaml');
    fs.writeFileSync(configPath, migrated);
    // What the migrated config says, as `check` reads it: accepted as is.
    execFileSync(AUTHGATE_BIN, ['check', '--config', configPath], { encoding: 'utf8' });
    const proc = start(AUTHGATE_BIN, ['run', '--config', configPath], {
      env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info' },
      logFile: path.join(dir, 'authgate.log'),
    });
    ag = { proc, url: `http://127.0.0.1:${port}`, stop: () => proc.stop('SIGTERM') };
    try {
      await waitFor(async () => {
        if (!proc.isAlive()) throw new Error('authgate exited');
        return (await request(`${ag.url}/ready`, { timeoutMs: 2000 })).status === 200;
      }, { timeoutMs: 20000, intervalMs: 100, what: 'authgate GET /ready to answer 200' });
    } catch (err) {
      await proc.stop('SIGKILL');
      throw new Error(`${err.message}\n--- config ---\n${migrated}--- output ---\n${proc.output()}`);
    }
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      timeout: 30000,
      args: [
        '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync',
        `--host-resolver-rules=MAP ${APP_HOST} 127.0.0.1`,
      ],
    });
  });

  after(async () => {
    await stopAll(() => browser?.close(), () => ag?.stop(), () => idp?.stop(), () => nginx?.stop());
  });

  /** A context that may reach 127.0.0.1 and app.example.com only. */
  async function context() {
    const ctx = await browser.newContext();
    ctx.setDefaultTimeout(15000);
    ctx.setDefaultNavigationTimeout(15000);
    await ctx.route(
      (url) => url.hostname !== '127.0.0.1' && url.hostname !== APP_HOST,
      (route) => route.abort('blockedbyclient'),
    );
    return ctx;
  }

  it('writes the values file\'s settings into the config and reports the rest', () => {
    assert.match(migrated, /^cookie:\n  name: _oauth2_proxy\n/m);
    assert.match(migrated, /^  domains:\n  - \.example\.com\n/m);
    assert.match(migrated, /^  same_site: lax\n  expire: 12h\n/m);
    assert.match(migrated, /^  discovery: false\n/m, 'skipDiscovery carried');
    assert.match(migrated, /^  allowed_groups:\n  - admins\n/m);
    assert.match(migrated, /^  email_domains:\n  - '\*'\n/m);
    assert.match(migrated, /^redirect:\n  allowed_domains:\n  - \.example\.com\n/m);
    assert.match(migrated, /- name: X-Auth-Request-Preferred-Username\n\s+claim: preferred_username/);
    assert.match(migrated, /- name: X-Auth-Request-Email\n\s+claim: email/);
    // Not carried, or carried with a difference: one line each, never silent.
    for (const option of ['--show-debug-on-error', 'validateURL', 'clientSecret', '--auth-logging']) {
      assert.ok(report.includes(option), `${option} reported:\n${report}`);
    }
  });

  it('signs alice in through Chromium onto the app with the injected identity headers', async () => {
    const ctx = await context();
    const page = await ctx.newPage();
    await page.goto(`http://${APP_HOST}:${port}/dashboard?tab=1`);
    assert.ok(page.url().startsWith(`${idp.issuer}/interaction/`), page.url());
    const resp = await submitLogin(page, 'alice', 'alice');
    assert.equal(resp.status(), 200);
    assert.equal(page.url(), `http://${APP_HOST}:${port}/dashboard?tab=1`);
    const echo = parseEcho(await resp.text());
    assert.deepEqual(echo.get('x-auth-request-email'), ['alice@example.com']);
    assert.deepEqual(echo.get('x-auth-request-preferred-username'), ['alice']);
    // The session cookie: oauth2-proxy's name, on the values file's domain,
    // never forwarded to the app.
    const cookies = (await ctx.cookies(`http://${APP_HOST}:${port}/`))
      .filter((c) => /^_oauth2_proxy(_\d+)?$/.test(c.name) && c.value !== '');
    assert.ok(cookies.length >= 1, JSON.stringify(await ctx.cookies()));
    for (const c of cookies) {
      assert.equal(c.domain, '.example.com');
      assert.equal(c.sameSite, 'Lax');
      assert.equal(c.httpOnly, true);
    }
    assert.ok(!(echo.get('cookie') || []).join(';').includes('_oauth2_proxy'), 'session cookie kept from the app');
    await ctx.close();
  });

  it('refuses bob, who is not in the allowed group admins', async () => {
    const ctx = await context();
    const page = await ctx.newPage();
    await page.goto(`http://${APP_HOST}:${port}/dashboard`);
    const resp = await submitLogin(page, 'bob', 'bob');
    assert.equal(resp.status(), 403);
    await ctx.close();
  });
});
