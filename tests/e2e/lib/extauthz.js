'use strict';
// The test as Envoy: ext_authz checks over HTTP and gRPC, sending only what
// Envoy sends (the providers of k8s/istio/mesh-config.yaml) and applying the answer.
const fs = require('node:fs');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const { request } = require('./http');

const MESH_CONFIG = path.join(__dirname, '..', '..', '..', 'k8s', 'istio', 'mesh-config.yaml');

/**
 * A list setting of one extension provider in k8s/istio/mesh-config.yaml
 * (e.g. `headersToUpstreamOnAllow` of `authgate-http`), lower-cased, so the
 * simulated Envoy behaves exactly as the shipped mesh config says. A small
 * line reader: the file is block-style YAML with one `- item` per line.
 */
function meshProviderList(provider, key, file = MESH_CONFIG) {
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  const start = lines.findIndex((l) => l.trim() === `- name: ${provider}`);
  if (start < 0) throw new Error(`provider ${provider} not in ${file}`);
  const indentOf = (l) => l.length - l.trimStart().length;
  const providerIndent = indentOf(lines[start]);
  let i = start + 1;
  for (; i < lines.length; i += 1) {
    const t = lines[i].trim();
    if (t.startsWith('- ') && indentOf(lines[i]) <= providerIndent) break; // next provider
    if (t === `${key}:`) break;
  }
  if (i >= lines.length || lines[i].trim() !== `${key}:`) throw new Error(`${key} not set for ${provider} in ${file}`);
  const out = [];
  for (i += 1; i < lines.length; i += 1) {
    const t = lines[i].trim();
    if (t === '' || t.startsWith('#')) continue;
    const m = /^- ([A-Za-z0-9_-]+)$/.exec(t);
    if (!m) break;
    out.push(m[1].toLowerCase());
  }
  if (!out.length) throw new Error(`${key} of ${provider} is empty in ${file}`);
  return out;
}

/** Headers the mesh config's HTTP provider lists in includeRequestHeadersInCheck. */
const INCLUDED_HEADERS = meshProviderList('authgate-http', 'includeRequestHeadersInCheck');
/** headersToUpstreamOnAllow of the mesh config's HTTP provider. */
const UPSTREAM_ON_ALLOW = meshProviderList('authgate-http', 'headersToUpstreamOnAllow');

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
  const included = pick(headers, INCLUDED_HEADERS);
  const sent = [['Host', host], ['Content-Length', '0']];
  if (included['x-forwarded-proto'] === undefined) sent.push(['x-forwarded-proto', proto]);
  for (const [k, v] of Object.entries(included)) sent.push([k, v]);
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


/**
 * Request headers as Envoy holds them: lower-case name -> list of values
 * (one entry per header line).
 */
function headerMap(entries) {
  const m = new Map();
  for (const [k, v] of entries) {
    if (v === undefined || v === null) continue;
    const name = k.toLowerCase();
    m.set(name, [...(m.get(name) || []), String(v)]);
  }
  return m;
}

/** A header map as [name, value] pairs for `request` (one line per value). */
function headerLines(m) {
  return [...m.entries()].flatMap(([k, vs]) => vs.map((v) => [k, v]));
}

/**
 * Envoy applying an HTTP ext_authz allow (200) to the client's request
 * headers: every headersToUpstreamOnAllow header present in the check
 * response overwrites the request's, then the names in
 * x-envoy-auth-headers-to-remove are removed (removals come after the sets).
 * @param {Map<string,string[]>} upstream the client's headers; changed in place
 * @param {{headers: object}} checkRes the 200 from the HTTP check
 */
function applyHttpAllow(upstream, checkRes) {
  for (const h of UPSTREAM_ON_ALLOW) {
    const v = checkRes.headers[h];
    if (v !== undefined) upstream.set(h, Array.isArray(v) ? v : [v]);
  }
  const remove = String(checkRes.headers['x-envoy-auth-headers-to-remove'] || '')
    .split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
  for (const h of remove) upstream.delete(h);
  return upstream;
}

/**
 * Envoy applying a gRPC ext_authz OkHttpResponse: each header option with its
 * append_action, then headers_to_remove.
 * @param {Map<string,string[]>} upstream the client's headers; changed in place
 * @param {object} ok CheckResponse.ok_response
 */
function applyGrpcAllow(upstream, ok) {
  for (const { key, value, append_action: action } of headerOptions(ok.headers)) {
    const had = upstream.get(key);
    switch (action) {
      case 'ADD_IF_ABSENT': if (!had) upstream.set(key, [value]); break;
      case 'OVERWRITE_IF_EXISTS_OR_ADD': upstream.set(key, [value]); break;
      case 'OVERWRITE_IF_EXISTS': if (had) upstream.set(key, [value]); break;
      default: upstream.set(key, [...(had || []), value]); // APPEND_IF_EXISTS_OR_ADD
    }
  }
  for (const h of ok.headers_to_remove || []) upstream.delete(h.toLowerCase());
  return upstream;
}

module.exports = {
  httpCheck, grpcCheck, authClient, headerOptions, headerMap, headerLines, applyHttpAllow, applyGrpcAllow,
  meshProviderList, INCLUDED_HEADERS, UPSTREAM_ON_ALLOW,
};
