'use strict';
// Issue 9, fault 4: authgate's /oauth2/auth behind real forward-auth fronts
// (Debian's nginx with `auth_request`, Debian's Caddy with `forward_auth`),
// configured as oauth2-proxy documents them, adapted to authgate: the
// README's "Behind nginx, Caddy or Traefik" snippets run here verbatim but
// for the addresses. The fronts report the original request
// (X-Forwarded-Method / X-Forwarded-Uri); authgate trusts 127.0.0.1, so
// skip_auth_routes (METHOD= too), api_routes and skip_preflight apply to it.
const fs = require('node:fs');
const path = require('node:path');
const { describe } = require('node:test');
const assert = require('node:assert/strict');
const { startIdp } = require('./lib/idp');
const { startNginx, startNginxServer, parseEcho } = require('./lib/nginx');
const { startCaddy, caddySkipReason } = require('./lib/caddy');
const { request, CookieJar, jarRequest } = require('./lib/http');
const { loginAtIdp, codeFlow } = require('./lib/idp_client');
const {
  skipReason, allocatePorts, baseConfig, merge, startAuthgate,
} = require('./lib/authgate');
const { stopAll, gate } = require('./lib/common');

const { it, before, after } = gate(skipReason() || caddySkipReason());

const IDENTITY = [
  'x-auth-request-user', 'x-auth-request-email', 'x-auth-request-preferred-username', 'x-auth-request-groups',
  'x-forwarded-user', 'x-forwarded-email', 'x-forwarded-preferred-username', 'x-forwarded-groups',
];
// What a client forges to look signed in on the way to the app.
const FORGED = IDENTITY.map((h) => [h, 'evil@evil.example']);

/** The fenced block of `lang` in README's "Behind nginx, Caddy or Traefik" section. */
function readmeSnippet(lang) {
  const readme = fs.readFileSync(path.join(__dirname, '..', '..', 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('### Behind nginx, Caddy or Traefik'));
  const m = new RegExp(`\`\`\`${lang}\n([\\s\\S]*?)\`\`\``).exec(section);
  assert.ok(m, `no ${lang} block in the README's forward-auth section`);
  return m[1];
}

/** Replaces every `from` in `text`, insisting there is one. */
function swap(text, from, to) {
  assert.ok(text.includes(from), `README snippet lacks ${from}`);
  return text.split(from).join(to);
}

/**
 * oauth2-proxy's nginx `auth_request` configuration as the README adapts it
 * (the original method reported, the other callers' headers cleared, every
 * identity header set from the answer), verbatim but for the addresses.
 */
function nginxSite(agUrl, appUrl) {
  const conf = swap(readmeSnippet('nginx'), 'http://127.0.0.1:4180', agUrl);
  return swap(conf, 'proxy_pass http://app;', `proxy_pass ${appUrl};`);
}

/**
 * oauth2-proxy's Caddy `forward_auth` configuration as the README adapts it
 * (client copies of the identity headers removed, the port kept in `rd`):
 * the body of its site block, verbatim but for the addresses.
 */
function caddySite(agHostPort, appHostPort) {
  const block = readmeSnippet('caddyfile');
  const body = block.slice(block.indexOf('{\n') + 2, block.lastIndexOf('}'));
  return swap(swap(body, '127.0.0.1:4180', agHostPort), '127.0.0.1:3000', appHostPort);
}

const PREFLIGHT = [['Origin', 'https://spa.example'], ['Access-Control-Request-Method', 'POST']];

/** `METHOD target` of the echo's request line (nginx proxies as HTTP/1.0). */
const methodAndTarget = (echo) => echo.requestLine.split(' ').slice(0, 2).join(' ');

/** The echo page for `request` ("METHOD target"), with no identity header in it. */
function assertAnonymousEcho(res, request) {
  assert.equal(res.status, 200, res.body.slice(0, 300));
  const echo = parseEcho(res.body);
  assert.equal(methodAndTarget(echo), request);
  for (const h of IDENTITY) assert.deepEqual(echo.get(h), [], `${h} reached the app: ${res.body}`);
  return echo;
}

/** The front's answer to authgate's 401: its redirect to /oauth2/sign_in. */
function assertSignIn(res, front, path) {
  assert.equal(res.status, 302, `${path}: ${res.status} ${res.body.slice(0, 300)}`);
  const loc = new URL(res.headers.location, front.url);
  assert.equal(loc.pathname, '/oauth2/sign_in');
  assert.equal(loc.searchParams.get('rd'), `${front.url}${path}`);
}

describe('forward auth behind real nginx and Caddy (issue 9, fault 4)', () => {
  let app;
  let idp;
  let ag;
  const fronts = {};

  before(async () => {
    app = await startNginx();
    const ports = await allocatePorts();
    const agUrl = `http://127.0.0.1:${ports.listen}`;
    fronts.nginx = await startNginxServer(() => nginxSite(agUrl, app.url));
    fronts.caddy = await startCaddy(() => caddySite(`127.0.0.1:${ports.listen}`, `127.0.0.1:${app.port}`));
    idp = await startIdp({
      redirectUris: Object.values(fronts).map((f) => `${f.url}/oauth2/callback`),
    });
    const config = merge(baseConfig({ ports, idp, upstreamUrl: app.url }), {
      server: { trusted_proxies: ['127.0.0.1/32'] },
      authorization: {
        allowed_groups: ['admins'],
        skip_auth_routes: ['^/public/', 'GET=^/docs/'],
        api_routes: ['^/api/'],
        skip_preflight: true,
      },
    });
    ag = await startAuthgate({ ports, config });
  });

  after(async () => {
    await stopAll(() => ag?.stop(), () => idp?.stop(), ...Object.values(fronts).map((f) => () => f.stop()), () => app?.stop());
  });

  /** Signs `user` in through the front (its /oauth2/* route); returns the jar. */
  async function signIn(front, user, path = '/admin') {
    const jar = new CookieJar();
    const start = await jarRequest(jar, `${front.url}/oauth2/start?rd=${encodeURIComponent(path)}`, { headers: { Accept: 'text/html' } });
    assert.equal(start.status, 302, start.body.slice(0, 300));
    const callback = await loginAtIdp(jar, idp, start.headers.location, user, user);
    assert.ok(callback.startsWith(`${front.url}/oauth2/callback?`), callback);
    const back = await jarRequest(jar, callback, { headers: { Accept: 'text/html' } });
    assert.equal(back.status, 302, back.body.slice(0, 300));
    return jar;
  }

  for (const name of ['nginx', 'caddy']) {
    describe(`behind ${name}`, () => {
      const front = () => fronts[name];

      it('lets a CORS preflight for a protected API through, unauthenticated', async () => {
        const res = await request(`${front().url}/api/items`, { method: 'OPTIONS', headers: PREFLIGHT });
        assertAnonymousEcho(res, 'OPTIONS /api/items');
        // Not a preflight without its CORS headers.
        assertSignIn(await request(`${front().url}/api/items`, { method: 'OPTIONS' }), front(), '/api/items');
      });

      it('applies skip_auth_routes to the original path and METHOD= rules to its method', async () => {
        assertAnonymousEcho(await request(`${front().url}/public/a?x=1`), 'GET /public/a?x=1');
        assertAnonymousEcho(await request(`${front().url}/docs/a`), 'GET /docs/a');
        const post = await request(`${front().url}/docs/a`, { method: 'POST', body: 'x=1', headers: { 'Content-Type': 'application/x-www-form-urlencoded' } });
        assertSignIn(post, front(), '/docs/a');
        assertSignIn(await request(`${front().url}/admin`), front(), '/admin');
        // An API route: authgate's 401, which the front turns into its sign-in redirect.
        assertSignIn(await request(`${front().url}/api/items`, { headers: { Accept: 'application/json' } }), front(), '/api/items');
        // A target servers read two ways never skips.
        assertSignIn(await request(`${front().url}/public/..;/admin`), front(), '/public/..;/admin');
      });

      it('is not fooled by a client sending the original-request headers itself', async () => {
        const forged = [
          ['X-Forwarded-Method', 'OPTIONS'], ['X-Forwarded-Uri', '/public/a'],
          ['X-Original-Method', 'OPTIONS'], ['X-Original-URI', '/public/a'],
          ['X-Original-URL', `${front().url}/public/a`],
          ...PREFLIGHT,
        ];
        assertSignIn(await request(`${front().url}/admin`, { headers: forged }), front(), '/admin');
        assertSignIn(await request(`${front().url}/docs/a`, { method: 'POST', headers: forged, body: '' }), front(), '/docs/a');
      });

      it('never lets a forged identity header reach the app on a skipped route', async () => {
        const res = await request(`${front().url}/public/a`, { headers: FORGED });
        assertAnonymousEcho(res, 'GET /public/a');
      });

      it('gives the app alice\'s identity on protected paths only, and refuses bob', async () => {
        const jar = await signIn(front(), 'alice');
        const res = await jarRequest(jar, `${front().url}/admin`, { headers: Object.fromEntries(FORGED) });
        assert.equal(res.status, 200, res.body.slice(0, 300));
        const echo = parseEcho(res.body);
        assert.equal(methodAndTarget(echo), 'GET /admin');
        assert.deepEqual(echo.get('x-auth-request-email'), ['alice@example.com']);
        assert.deepEqual(echo.get('x-auth-request-user'), ['alice@example.com']);
        assert.deepEqual(echo.get('x-auth-request-groups'), ['admins,devs']);
        // nginx's snippet sets the X-Forwarded-* identity headers too; Caddy's drops them.
        assert.deepEqual(echo.get('x-forwarded-email'), name === 'nginx' ? ['alice@example.com'] : []);
        assert.doesNotMatch(res.body, /evil/);
        // POST is not skipped for her either: authenticated, with identity.
        const post = await jarRequest(jar, `${front().url}/docs/a`, { method: 'POST', body: '' });
        assert.equal(post.status, 200, post.body.slice(0, 300));
        assert.deepEqual(parseEcho(post.body).get('x-auth-request-email'), ['alice@example.com']);
        // A skipped route: no identity, even for her.
        assertAnonymousEcho(await jarRequest(jar, `${front().url}/public/a`), 'GET /public/a');

        // bob (not in admins; his browser login is refused at the
        // callback) with his ID token as a bearer: 403 on a protected path,
        // let through without identity on a skipped one.
        const tokens = await codeFlow(new CookieJar(), idp, {
          username: 'bob', password: 'bob', redirectUri: `${front().url}/oauth2/callback`,
        });
        const bearer = { Authorization: `Bearer ${tokens.id_token}`, Accept: 'application/json' };
        const refused = await request(`${front().url}/admin`, { headers: bearer });
        assert.equal(refused.status, 403, refused.body.slice(0, 300));
        assertAnonymousEcho(await request(`${front().url}/public/a`, { headers: bearer }), 'GET /public/a');
      });
    });
  }
});
