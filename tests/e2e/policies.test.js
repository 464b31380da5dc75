'use strict';
// Issue 12 end to end: `policies` with a CEL expression over a
// Keycloak-shaped `realm_access.roles` claim from the real oidc-provider,
// in a real browser (the 403 page names the policy and the account), the
// same answers from ext_authz HTTP with the browser's session, and the
// signed identity assertion verified with `jose` against /oauth2/jwks.json.
const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');
const { describe } = require('node:test');
const assert = require('node:assert/strict');
const { startIdp } = require('./lib/idp');
const { startNginx, parseEcho } = require('./lib/nginx');
const { launchBrowser, newContext, submitLogin } = require('./lib/browser');
const { request } = require('./lib/http');
const { tmpDir } = require('./lib/procs');
const {
  skipReason, allocatePorts, baseConfig, merge, startAuthgate,
} = require('./lib/authgate');
const { stopAll, cookieHeader, gate } = require('./lib/common');

const { it, before, after } = gate(skipReason());

describe('policies and the signed assertion with oidc-provider (issue 12)', () => {
  let nginx;
  let idp;
  let ag;
  let browser;

  before(async () => {
    nginx = await startNginx();
    const ports = await allocatePorts();
    const base = `http://127.0.0.1:${ports.listen}`;
    idp = await startIdp({ redirectUris: [`${base}/oauth2/callback`] });
    const dir = tmpDir('assertion-key');
    const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const keyFile = path.join(dir, 'key.pem');
    fs.writeFileSync(keyFile, privateKey.export({ format: 'pem', type: 'pkcs8' }));
    const config = merge(baseConfig({ ports, idp, upstreamUrl: nginx.url }), {
      authorization: { allowed_groups: [] },
      policies: [
        {
          name: 'prometheus-admin',
          paths: ['^/api/v1/admin/'],
          expression: 'has(claims.realm_access) && "prom-admin" in claims.realm_access.roles',
        },
        { name: 'health', paths: ['^/-/healthy$'], skip_auth: true },
      ],
      assertion: { header: 'X-Auth-Request-Jwt', signing_key_file: keyFile, issuer: 'https://auth.e2e.test' },
    });
    ag = await startAuthgate({ ports, config });
    browser = await launchBrowser();
  });

  after(async () => {
    await stopAll(() => browser?.close(), () => ag?.stop(), () => idp?.stop(), () => nginx?.stop());
  });

  /** A browser context signed in as `user` (landing on `path`). */
  async function signIn(user, path) {
    const context = await newContext(browser);
    const page = await context.newPage();
    await page.goto(`${ag.url}${path}`);
    assert.ok(page.url().startsWith(`${idp.issuer}/interaction/`), page.url());
    const resp = await submitLogin(page, user, user);
    return { context, page, resp };
  }

  /** ext_authz HTTP's answer for `path` with the context's session. */
  async function extAuthz(context, path) {
    const cookie = await cookieHeader(context, ag.url);
    return request(`${ag.extAuthzHttpUrl}${path}`, {
      headers: { Host: new URL(ag.url).host, Cookie: cookie, Accept: 'application/json' },
    });
  }

  it('lets alice (realm role prom-admin) through, with a verifiable assertion', async () => {
    const { context, resp } = await signIn('alice', '/api/v1/admin/tsdb/snapshot');
    assert.equal(resp.status(), 200);
    const echo = parseEcho(await resp.text());
    const tokens = echo.get('x-auth-request-jwt');
    assert.equal(tokens.length, 1);
    const { createRemoteJWKSet, jwtVerify } = await import('jose');
    const jwks = createRemoteJWKSet(new URL(`${ag.url}/oauth2/jwks.json`));
    const { payload, protectedHeader } = await jwtVerify(tokens[0], jwks, {
      issuer: 'https://auth.e2e.test',
      audience: new URL(ag.url).host,
      algorithms: ['ES256'],
    });
    assert.equal(protectedHeader.alg, 'ES256');
    assert.equal(payload.email, 'alice@example.com');
    assert.equal(payload.sub, 'alice');
    assert.deepEqual(payload.groups, ['admins', 'devs']);
    const check = await extAuthz(context, '/api/v1/admin/tsdb/snapshot');
    assert.equal(check.status, 200);
    assert.ok(check.headers['x-auth-request-jwt'], 'ext_authz HTTP carries the assertion');
    await context.close();
  });

  it('refuses bob with a 403 that names the policy, on the proxy and ext_authz alike', async () => {
    const { context, page, resp } = await signIn('bob', '/api/v1/admin/tsdb/snapshot');
    assert.equal(resp.status(), 403);
    assert.equal(await page.textContent('#policy'), 'prometheus-admin');
    assert.equal(await page.textContent('#signed-in-as'), 'bob@example.com');
    assert.equal((await extAuthz(context, '/api/v1/admin/tsdb/snapshot')).status, 403);
    // Outside the policy bob is let in: `authorization` alone decides.
    assert.equal((await extAuthz(context, '/graph')).status, 200);
    await context.close();
  });

  it('skips authentication for a skip_auth policy, with no assertion', async () => {
    const resp = await request(`${ag.url}/-/healthy`, { headers: { 'X-Auth-Request-Jwt': 'forged' } });
    assert.equal(resp.status, 200);
    assert.deepEqual(parseEcho(resp.body.toString()).get('x-auth-request-jwt'), []);
  });
});
