'use strict';
// The test as Envoy: ext_authz checks over HTTP and gRPC, sending only what
// Envoy sends (the article's Istio provider config) and applying the answer.
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const { request } = require('./http');

/** Headers the article's provider lists in includeRequestHeadersInCheck. */
const INCLUDED_HEADERS = ['cookie', 'authorization', 'x-auth-request-redirect'];
/** headersToUpstreamOnAllow of the article's provider. */
const UPSTREAM_ON_ALLOW = ['authorization', 'path', 'x-auth-request-user', 'x-auth-request-email', 'x-auth-request-access-token', 'x-auth-request-groups', 'x-auth-request-preferred-username'];

function pick(headers, names) {
  const out = {};
  for (const [k, v] of Object.entries(headers || {})) {
    if (names.includes(k.toLowerCase()) && v !== undefined) out[k.toLowerCase()] = v;
  }
  return out;
}

/**
 * One Envoy HTTP ext_authz check: original method, original path + query,
 * Host = the app's authority, Content-Length 0, and only the included headers
 * (+ x-forwarded-proto, which Envoy adds).
 */
async function httpCheck(checkBaseUrl, { method = 'GET', pathWithQuery, host, headers = {}, proto = 'http' }) {
  const sent = [['Host', host], ['Content-Length', '0'], ['x-forwarded-proto', proto]];
  for (const [k, v] of Object.entries(pick(headers, INCLUDED_HEADERS))) sent.push([k, v]);
  const res = await request(`${checkBaseUrl}${pathWithQuery}`, { method, headers: sent });
  return res;
}

let authService;
function authClient(addr) {
  if (!authService) {
    const def = protoLoader.loadSync(path.join(__dirname, '..', 'proto', 'ext_authz.proto'), {
      keepCase: true, longs: String, enums: String, defaults: true, oneofs: true,
    });
    authService = grpc.loadPackageDefinition(def).envoy.service.auth.v3.Authorization;
  }
  return new authService(addr, grpc.credentials.createInsecure());
}

/**
 * One Envoy gRPC ext_authz Check. `headers` are lower-case request headers
 * (pseudo-headers added like Envoy does).
 */
function grpcCheck(client, { method = 'GET', pathWithQuery, host, headers = {}, scheme = 'http', rawRequest }) {
  const req = rawRequest || buildCheckRequest({
    method, pathWithQuery, host, headers, scheme,
  });
  return new Promise((resolve, reject) => {
    client.Check(req, { deadline: Date.now() + 10000 }, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

function buildCheckRequest({
  method, pathWithQuery, host, headers, scheme,
}) {
  const all = {
    ':authority': host, ':method': method, ':path': pathWithQuery, ':scheme': scheme, 'x-forwarded-proto': scheme,
    ...Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v])),
  };
  return {
    attributes: {
      request: {
        http: {
          id: String(Date.now()),
          method,
          headers: all,
          path: pathWithQuery,
          host,
          scheme,
          query: '', // Envoy leaves it empty: the query is part of `path`
          protocol: 'HTTP/1.1',
        },
      },
    },
  };
}

/** Header options of a CheckResponse part as [{key, value, append_action}]. */
function headerOptions(list) {
  return (list || []).map((o) => ({ key: o.header.key.toLowerCase(), value: o.header.value || (o.header.raw_value ? Buffer.from(o.header.raw_value).toString('utf8') : ''), append_action: o.append_action }));
}

module.exports = { httpCheck, grpcCheck, authClient, headerOptions, INCLUDED_HEADERS, UPSTREAM_ON_ALLOW };
