'use strict';
// Issue 4: authgate as Istio's CUSTOM authorization provider. The test plays
// Envoy (HTTP and gRPC ext_authz) and a cookie-keeping browser; the login is
// completed purely through checks, as in the article's setup.
const { describe } = require('node:test');
const assert = require('node:assert/strict');
const { startIdp } = require('./lib/idp');
const { startNginx, parseEcho } = require('./lib/nginx');
const { request, CookieJar } = require('./lib/http');
const { loginAtIdp } = require('./lib/idp_client');
const { freePort } = require('./lib/ports');
const {
  skipReason, allocatePorts, baseConfig, merge, startAuthgate,
} = require('./lib/authgate');
const { stopAll, gate } = require('./lib/common');
const {
  httpCheck, grpcCheck, authClient, headerOptions, headerMap, headerLines, applyHttpAllow, applyGrpcAllow,
} = require('./lib/extauthz');

const { it, before, after } = gate(skipReason());

const IDENTITY = [
  'x-auth-request-user', 'x-auth-request-email', 'x-auth-request-preferred-username', 'x-auth-request-groups',
  'x-forwarded-user', 'x-forwarded-email', 'x-forwarded-preferred-username', 'x-forwarded-groups',
];
// The config maps preferred_username to a claim the IdP never issues, so those
// two headers are always "identity headers it did not set".
const UNSET = ['x-auth-request-preferred-username', 'x-forwarded-preferred-username'];

const lowerList = (v) => String(v || '').split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
const countRaw = (rawHeaders, name) => rawHeaders.filter((h, i) => i % 2 === 0 && h.toLowerCase() === name).length;

describe('ext_authz: the test as Envoy (issue 4)', () => {
  let nginx;
  let idp;
  let ag;
  let grpcClient;
  let appHost; // the app's authority as Envoy sees it; nothing listens there
  let appBase;

  before(async () => {
    nginx = await startNginx();
    const ports = await allocatePorts();
    const appPort = await freePort();
    appHost = `127.0.0.1:${appPort}`;
    appBase = `http://${appHost}`;
    idp = await startIdp({
      redirectUris: [`${appBase}/oauth2/callback`, `http://127.0.0.1:${ports.listen}/oauth2/callback`],
    });
    const config = merge(baseConfig({ ports, idp, upstreamUrl: nginx.url }), {
      provider: { claims: { preferred_username: 'nickname' } },
    });
    ag = await startAuthgate({ ports, config });
    grpcClient = authClient(ag.extAuthzGrpcAddr);
  });

  after(async () => {
    grpcClient?.close();
    await stopAll(() => ag?.stop(), () => idp?.stop(), () => nginx?.stop());
  });

  /** One HTTP check as Envoy would send it for a browser request to the app. */
  function envoyHttp(jar, pathWithQuery, extra = {}) {
    return httpCheck(ag.extAuthzHttpUrl, {
      pathWithQuery, host: appHost, headers: { cookie: jar.header(`${appBase}${pathWithQuery}`), ...extra },
    });
  }

  /** A browser doing the whole login through HTTP checks; returns every check answer in order. */
  async function httpLogin(user, target = '/some/page?x=1') {
    const jar = new CookieJar();
    const first = await envoyHttp(jar, target);
    jar.store(`${appBase}${target}`, first.setCookies);
    assert.equal(first.status, 302, `the first check must send ${user} to log in: ${first.status} ${first.body.slice(0, 200)}`);
    const back = new URL(await loginAtIdp(jar, idp, first.headers.location, user, user));
    const cbPath = back.pathname + back.search;
    const callback = await envoyHttp(jar, cbPath);
    jar.store(`${appBase}${cbPath}`, callback.setCookies);
    const next = await envoyHttp(jar, target);
    jar.store(`${appBase}${target}`, next.setCookies);
    return {
      jar, first, back, callback, next,
    };
  }

  it('HTTP: an anonymous check answers 302 to the IdP with a CSRF cookie and no-store', async () => {
    const res = await envoyHttp(new CookieJar(), '/some/page?x=1');
    assert.equal(res.status, 302);
    assert.ok(res.headers.location.startsWith(`${idp.issuer}/auth?`), res.headers.location);
    assert.equal(new URL(res.headers.location).searchParams.get('redirect_uri'), `${appBase}/oauth2/callback`);
    assert.match(res.headers['cache-control'] || '', /no-store/);
    assert.ok(res.setCookies.some((c) => c.startsWith('_oauth2_proxy_csrf')), res.setCookies.join(' | '));
  });

  it('HTTP: the app\'s own /ping is not special on the ext_authz listener', async () => {
    const res = await envoyHttp(new CookieJar(), '/ping');
    assert.equal(res.status, 302);
  });

  it('HTTP: alice logs in purely through checks; the next check is exactly 200 with identity headers', async () => {
    const { callback, next, back } = await httpLogin('alice');
    assert.equal(back.origin, appBase, 'the IdP sends the browser back to the app host');
    assert.equal(back.pathname, '/oauth2/callback');
    assert.equal(callback.status, 302, `callback check: ${callback.status} ${callback.body.slice(0, 200)}`);
    assert.ok(callback.setCookies.some((c) => /^_oauth2_proxy(_\d+)?=[^;]+/.test(c)), callback.setCookies.join(' | '));
    const target = new URL(callback.headers.location, appBase);
    assert.equal(target.origin, appBase);
    assert.equal(target.pathname + target.search, '/some/page?x=1');
    assert.equal(next.status, 200);
    assert.equal(next.headers['x-auth-request-email'], 'alice@example.com');
    assert.equal(next.headers['x-auth-request-user'], 'alice@example.com');
    assert.equal(next.headers['x-auth-request-groups'], 'admins,devs');
    assert.equal(next.headers['x-forwarded-email'], 'alice@example.com');
    for (const h of IDENTITY.filter((n) => !UNSET.includes(n))) assert.equal(countRaw(next.rawHeaders, h), 1, `${h} once`);
    assert.ok('x-envoy-auth-headers-to-remove' in next.headers, 'x-envoy-auth-headers-to-remove present');
    const toRemove = lowerList(next.headers['x-envoy-auth-headers-to-remove']);
    for (const h of UNSET) assert.ok(toRemove.includes(h), `${h} in ${toRemove}`);
    for (const h of IDENTITY.filter((n) => !UNSET.includes(n))) assert.ok(!toRemove.includes(h), `${h} must not be removed`);
    for (const h of UNSET) assert.equal(next.headers[h], undefined);
  });

  /** What the browser sends with the request: authgate's cookies plus an app cookie. */
  const withAppCookie = (jar, pathWithQuery) => `${jar.header(`${appBase}${pathWithQuery}`)}; app=1`;

  /** Sends `upstream` (a header map after Envoy's edits) to nginx; returns the echo. */
  async function forward(upstream, pathWithQuery) {
    const res = await request(`${nginx.url}${pathWithQuery}`, { headers: headerLines(upstream) });
    assert.equal(res.status, 200, res.body.slice(0, 200));
    return parseEcho(res.body);
  }

  /** The upstream saw the app's cookie and none of authgate's (session, chunks, CSRF). */
  function assertAppCookieOnly(echo) {
    const cookies = echo.get('cookie').flatMap((line) => line.split(/;\s*/));
    assert.ok(cookies.includes('app=1'), `app=1 kept: ${JSON.stringify(echo.get('cookie'))}`);
    assert.ok(!cookies.some((c) => c.startsWith('_oauth2_proxy')), `authgate's cookies reached the app: ${JSON.stringify(echo.get('cookie'))}`);
  }

  it('HTTP: Envoy applying the allow sends the upstream alice\'s identity and the app\'s cookie, never authgate\'s cookies or a forged identity', async () => {
    const { jar, next } = await httpLogin('alice', '/app/page');
    assert.equal(next.status, 200);
    const cookie = withAppCookie(jar, '/app/page');
    assert.match(cookie, /(^|; )_oauth2_proxy(_\d+)?=/, 'the browser holds a session cookie');
    // The client's request as Envoy holds it; the check sees only the included headers.
    const client = [
      ['x-auth-request-email', 'evil@evil.com'],
      ['x-auth-request-preferred-username', 'evil'],
      ['x-forwarded-preferred-username', 'evil'],
      ['cookie', cookie],
    ];
    const check = await httpCheck(ag.extAuthzHttpUrl, { pathWithQuery: '/app/page', host: appHost, headers: Object.fromEntries(client) });
    assert.equal(check.status, 200, check.body.slice(0, 200));
    const echo = await forward(applyHttpAllow(headerMap(client), check), '/app/page');
    assert.deepEqual(echo.get('x-auth-request-email'), ['alice@example.com']);
    assert.doesNotMatch(echo.text, /evil/);
    assertAppCookieOnly(echo);
  });

  it('HTTP: a Cookie header holding only authgate\'s cookies does not reach the upstream at all', async () => {
    const { jar, next } = await httpLogin('alice', '/app/only');
    assert.equal(next.status, 200);
    // Only authgate's: the jar (like a browser) also holds the IdP's cookies for 127.0.0.1.
    const own = jar.header(`${appBase}/app/only`).split('; ').filter((c) => c.startsWith('_oauth2_proxy'));
    assert.ok(own.length > 0, 'the browser holds a session cookie');
    const client = [['cookie', own.join('; ')]];
    const check = await httpCheck(ag.extAuthzHttpUrl, { pathWithQuery: '/app/only', host: appHost, headers: Object.fromEntries(client) });
    assert.equal(check.status, 200);
    const echo = await forward(applyHttpAllow(headerMap(client), check), '/app/only');
    assert.deepEqual(echo.get('x-auth-request-email'), ['alice@example.com']);
    assert.deepEqual(echo.get('cookie'), [], 'no Cookie header upstream');
  });

  it('HTTP: bob is denied with 403 and never allowed', async () => {
    const { callback, next } = await httpLogin('bob');
    const answers = [callback.status, next.status];
    assert.ok(!answers.includes(200), `bob was allowed: ${answers}`);
    assert.ok(callback.status === 403 || next.status === 403, `expected a 403, got ${answers}`);
  });

  it('HTTP: an Authorization header that is not a valid JWT is not allowed', async () => {
    const res = await envoyHttp(new CookieJar(), '/some/page', { authorization: 'Bearer not.a.jwt' });
    assert.ok([302, 401].includes(res.status), `expected 302 or 401, got ${res.status}`);
  });

  /** One gRPC check as Envoy would send it. */
  function envoyGrpc(jar, pathWithQuery, extra = {}) {
    const cookie = jar.header(`${appBase}${pathWithQuery}`);
    return grpcCheck(grpcClient, {
      pathWithQuery, host: appHost, headers: { ...(cookie ? { cookie } : {}), ...extra },
    });
  }

  function deniedHeaders(res) {
    return headerOptions(res.denied_response?.headers);
  }

  async function grpcLogin(user, target = '/grpc/page?y=2') {
    const jar = new CookieJar();
    const first = await envoyGrpc(jar, target);
    const firstHeaders = deniedHeaders(first);
    jar.store(`${appBase}${target}`, firstHeaders.filter((h) => h.key === 'set-cookie').map((h) => h.value));
    const location = firstHeaders.find((h) => h.key === 'location')?.value;
    assert.ok(location, `the first gRPC check must send ${user} to log in: ${JSON.stringify(first)}`);
    const back = new URL(await loginAtIdp(jar, idp, location, user, user));
    const cbPath = back.pathname + back.search;
    const callback = await envoyGrpc(jar, cbPath);
    jar.store(`${appBase}${cbPath}`, deniedHeaders(callback).filter((h) => h.key === 'set-cookie').map((h) => h.value));
    const next = await envoyGrpc(jar, target);
    return {
      jar, first, callback, next,
    };
  }

  it('gRPC: an anonymous check is UNAUTHENTICATED with a denied_response 302 to the IdP', async () => {
    const res = await envoyGrpc(new CookieJar(), '/grpc/page?y=2');
    assert.equal(res.status.code, 16);
    assert.equal(res.http_response, 'denied_response');
    assert.equal(res.denied_response.status.code, 302);
    const headers = deniedHeaders(res);
    const location = headers.find((h) => h.key === 'location');
    assert.ok(location && location.value.startsWith(`${idp.issuer}/auth?`), JSON.stringify(headers));
    assert.equal(new URL(location.value).searchParams.get('redirect_uri'), `${appBase}/oauth2/callback`);
    const cookies = headers.filter((h) => h.key === 'set-cookie');
    assert.ok(cookies.some((h) => h.value.startsWith('_oauth2_proxy_csrf')), JSON.stringify(cookies));
    assert.ok(cookies.every((h) => !h.value.includes('\n')), 'one Set-Cookie per header option');
  });

  it('gRPC: alice logs in through checks; then OK with identity headers set OVERWRITE_IF_EXISTS_OR_ADD', async () => {
    const { callback, next } = await grpcLogin('alice');
    assert.notEqual(callback.status.code, 0);
    assert.equal(callback.denied_response.status.code, 302);
    assert.ok(deniedHeaders(callback).some((h) => h.key === 'set-cookie' && /^_oauth2_proxy(_\d+)?=[^;]+/.test(h.value)));
    assert.equal(next.status.code, 0, JSON.stringify(next));
    assert.equal(next.http_response, 'ok_response');
    const headers = headerOptions(next.ok_response.headers);
    const byName = Object.fromEntries(headers.map((h) => [h.key, h]));
    assert.equal(byName['x-auth-request-email']?.value, 'alice@example.com');
    assert.equal(byName['x-forwarded-groups']?.value, 'admins,devs');
    for (const h of IDENTITY.filter((n) => !UNSET.includes(n))) {
      assert.equal(headers.filter((o) => o.key === h).length, 1, `${h} once`);
      assert.equal(byName[h].append_action, 'OVERWRITE_IF_EXISTS_OR_ADD', `${h} append_action`);
    }
    const removed = next.ok_response.headers_to_remove.map((h) => h.toLowerCase());
    for (const h of UNSET) assert.ok(removed.includes(h), `${h} in headers_to_remove ${removed}`);
    for (const h of headers.map((o) => o.key)) assert.ok(!removed.includes(h), `${h} is both set and removed`);
  });

  it('gRPC: Envoy applying ok_response sends the upstream alice\'s identity and the app\'s cookie, never authgate\'s cookies', async () => {
    const { jar, next } = await grpcLogin('alice', '/grpc/app');
    assert.equal(next.status.code, 0, JSON.stringify(next));
    const cookie = withAppCookie(jar, '/grpc/app');
    assert.match(cookie, /(^|; )_oauth2_proxy(_\d+)?=/, 'the browser holds a session cookie');
    const client = [
      ['x-forwarded-email', 'evil@evil.com'],
      ['x-forwarded-preferred-username', 'evil'],
      ['cookie', cookie],
    ];
    const check = await grpcCheck(grpcClient, { pathWithQuery: '/grpc/app', host: appHost, headers: Object.fromEntries(client) });
    assert.equal(check.status.code, 0, JSON.stringify(check));
    const echo = await forward(applyGrpcAllow(headerMap(client), check.ok_response), '/grpc/app');
    assert.deepEqual(echo.get('x-forwarded-email'), ['alice@example.com']);
    assert.doesNotMatch(echo.text, /evil/);
    assertAppCookieOnly(echo);
  });

  it('gRPC: a session cookie joined with "," from several cookie lines still counts; header_map works too', async () => {
    const { jar, next } = await grpcLogin('alice', '/grpc/joined');
    assert.equal(next.status.code, 0);
    const cookie = jar.header(`${appBase}/grpc/joined`);
    const joined = await grpcCheck(grpcClient, {
      pathWithQuery: '/grpc/joined', host: appHost, headers: { cookie: `theme=dark, ${cookie.split('; ').join(', ')}` },
    });
    assert.equal(joined.status.code, 0, JSON.stringify(joined.denied_response));
    const viaMap = await grpcCheck(grpcClient, {
      rawRequest: {
        attributes: {
          request: {
            http: {
              method: 'GET',
              path: '/grpc/joined',
              host: appHost,
              scheme: 'http',
              header_map: {
                headers: [
                  { key: ':authority', raw_value: Buffer.from(appHost) },
                  { key: ':path', raw_value: Buffer.from('/grpc/joined') },
                  { key: 'cookie', raw_value: Buffer.from(cookie) },
                ],
              },
            },
          },
        },
      },
    });
    assert.equal(viaMap.status.code, 0, JSON.stringify(viaMap.denied_response));
  });

  it('gRPC: bob is PERMISSION_DENIED with a 403', async () => {
    const { callback, next } = await grpcLogin('bob');
    assert.notEqual(callback.status.code, 0);
    assert.notEqual(next.status.code, 0);
    const denied = [callback, next].find((r) => r.status.code === 7);
    assert.ok(denied, `expected code 7, got ${callback.status.code} then ${next.status.code}`);
    assert.equal(denied.denied_response.status.code, 403);
  });

  it('gRPC: a CheckRequest without attributes.request.http is PERMISSION_DENIED, not a crash', async () => {
    const res = await grpcCheck(grpcClient, { rawRequest: { attributes: { request: {} } } });
    assert.equal(res.status.code, 7);
    const after = await envoyGrpc(new CookieJar(), '/still/alive');
    assert.equal(after.status.code, 16);
  });
});
