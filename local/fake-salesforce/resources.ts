/** Bearer-protected resources: userinfo, the identity URL and a minimal REST API. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Context } from './context.ts';
import { identityUrl } from './context.ts';
import { bearerToken, send, sendJson } from './http.ts';
import { newSalesforceId } from './ids.ts';
import type { AccessTokenRecord, User } from './state.ts';
import { scopeList } from './state.ts';

export const API_VERSIONS = [
  { label: "Winter '25", url: '/services/data/v62.0', version: '62.0' },
  { label: "Spring '25", url: '/services/data/v63.0', version: '63.0' },
  { label: "Summer '25", url: '/services/data/v64.0', version: '64.0' },
  { label: "Winter '26", url: '/services/data/v65.0', version: '65.0' },
];
const LATEST = 65;
const OLDEST = 20;

const KEY_PREFIXES: Record<string, string> = {
  Account: '001',
  Contact: '003',
  Opportunity: '006',
  Lead: '00Q',
  Case: '500',
  User: '005',
};

function unauthorized(res: ServerResponse): void {
  send(res, 401, 'Bad_OAuth_Token', 'text/plain;charset=UTF-8', {
    'www-authenticate': 'Bearer error="invalid_token"',
  });
}

function userUrls(ctx: Context, user: User): Record<string, string> {
  const base = ctx.url();
  const data = `${base}/services/data/v{version}`;
  return {
    enterprise: `${base}/services/Soap/c/{version}/${ctx.orgId.slice(0, 15)}`,
    metadata: `${base}/services/Soap/m/{version}/${ctx.orgId.slice(0, 15)}`,
    partner: `${base}/services/Soap/u/{version}/${ctx.orgId.slice(0, 15)}`,
    rest: `${data}/`,
    sobjects: `${data}/sobjects/`,
    search: `${data}/search/`,
    query: `${data}/query/`,
    recent: `${data}/recent/`,
    tooling_rest: `${data}/tooling/`,
    profile: `${base}/${user.id}`,
    feeds: `${data}/chatter/feeds`,
    groups: `${data}/chatter/groups`,
    users: `${data}/chatter/users`,
    feed_items: `${data}/chatter/feed-items`,
    feed_elements: `${data}/chatter/feed-elements`,
    custom_domain: base,
  };
}

function names(user: User): { first: string; last: string } {
  const parts = user.displayName.split(' ');
  if (parts.length < 2) return { first: '', last: user.displayName };
  return { first: parts.slice(0, -1).join(' '), last: parts[parts.length - 1] ?? '' };
}

function activeToken(ctx: Context, req: IncomingMessage): AccessTokenRecord | undefined {
  const token = bearerToken(req);
  return token === null ? undefined : ctx.state.activeAccessToken(token);
}

export function handleUserinfo(ctx: Context, req: IncomingMessage, res: ServerResponse): void {
  ctx.calls.userinfo++;
  const rec = activeToken(ctx, req);
  if (!rec) {
    unauthorized(res);
    return;
  }
  const user = rec.user;
  const { first, last } = names(user);
  sendJson(res, 200, {
    sub: identityUrl(ctx, user.id),
    user_id: user.id,
    organization_id: ctx.orgId,
    preferred_username: user.username,
    nickname: user.username.split('@')[0] ?? user.username,
    name: user.displayName,
    email: user.email,
    email_verified: true,
    given_name: first,
    family_name: last,
    zoneinfo: 'America/Los_Angeles',
    photos: {
      picture: `${ctx.url()}/profilephoto/005/F`,
      thumbnail: `${ctx.url()}/profilephoto/005/T`,
    },
    profile: `${ctx.url()}/${user.id}`,
    picture: `${ctx.url()}/profilephoto/005/F`,
    address: { country: 'US' },
    is_salesforce_integration_user: false,
    urls: userUrls(ctx, user),
    active: true,
    user_type: 'STANDARD',
    language: 'en_US',
    locale: 'en_US',
    utcOffset: -28800000,
    updated_at: '2025-01-01T00:00:00Z',
    is_app_installed: true,
  });
}

export function handleIdentity(
  ctx: Context,
  req: IncomingMessage,
  res: ServerResponse,
  orgPart: string,
  userPart: string,
): void {
  ctx.calls.identity++;
  if (req.method !== 'GET' && req.method !== 'POST') {
    send(res, 405, 'Method Not Allowed', 'text/plain;charset=UTF-8');
    return;
  }
  const rec = activeToken(ctx, req);
  if (!rec) {
    unauthorized(res);
    return;
  }
  const orgMatches = orgPart === ctx.orgId || orgPart === ctx.orgId.slice(0, 15);
  const user =
    ctx.state.users.get(userPart) ??
    [...ctx.state.users.values()].find((u) => userPart.length === 15 && u.id.startsWith(userPart));
  if (!orgMatches || !user) {
    send(res, 404, 'Bad_Id', 'text/plain;charset=UTF-8');
    return;
  }
  const { first, last } = names(user);
  sendJson(res, 200, {
    id: identityUrl(ctx, user.id),
    asserted_user: rec.user.id === user.id,
    user_id: user.id,
    organization_id: ctx.orgId,
    username: user.username,
    nick_name: user.username.split('@')[0] ?? user.username,
    display_name: user.displayName,
    email: user.email,
    email_verified: true,
    first_name: first,
    last_name: last,
    timezone: 'America/Los_Angeles',
    photos: {
      picture: `${ctx.url()}/profilephoto/005/F`,
      thumbnail: `${ctx.url()}/profilephoto/005/T`,
    },
    addr_street: null,
    addr_city: null,
    addr_state: null,
    addr_country: 'US',
    addr_zip: null,
    mobile_phone: null,
    mobile_phone_verified: false,
    is_lightning_login_user: false,
    status: { created_date: null, body: null },
    urls: userUrls(ctx, user),
    active: true,
    user_type: 'STANDARD',
    language: 'en_US',
    locale: 'en_US',
    utcOffset: -28800000,
    last_modified_date: '2025-01-01T00:00:00.000+0000',
    is_app_installed: true,
  });
}

// ---------------------------------------------------------------------------------------
// REST

interface Reply {
  status: number;
  body: unknown;
}

function restError(status: number, errorCode: string, message: string): Reply {
  return { status, body: [{ message, errorCode }] };
}

function ok(body: unknown): Reply {
  return { status: 200, body };
}

const recordIds = new WeakMap<Context, Map<string, string>>();

/** The one record ("Acme") each object type has in the fake org. */
function sampleRecord(ctx: Context, type: string, version: string): Record<string, unknown> {
  let ids = recordIds.get(ctx);
  if (!ids) {
    ids = new Map();
    recordIds.set(ctx, ids);
  }
  let id = ids.get(type);
  if (id === undefined) {
    id = newSalesforceId(KEY_PREFIXES[type] ?? 'a00');
    ids.set(type, id);
  }
  return {
    attributes: { type, url: `/services/data/v${version}/sobjects/${type}/${id}` },
    Id: id,
    Name: 'Acme',
  };
}

/** `/services/data...`: versions (public), then bearer-protected resources. */
export function handleRest(
  ctx: Context,
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
  query: URLSearchParams,
): void {
  ctx.calls.rest++;
  const reply = restReply(ctx, req, path, query);
  sendJson(res, reply.status, reply.body);
}

function restReply(
  ctx: Context,
  req: IncomingMessage,
  path: string,
  query: URLSearchParams,
): Reply {
  const rest = path.replace(/^\/services\/data\/?/, '').replace(/\/$/, '');
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    return restError(
      405,
      'METHOD_NOT_ALLOWED',
      `HTTP Method '${req.method ?? ''}' not allowed. Allowed are GET,HEAD`,
    );
  }
  if (rest === '') return ok(API_VERSIONS);

  const rec = activeToken(ctx, req);
  if (!rec) return restError(401, 'INVALID_SESSION_ID', 'Session expired or invalid');
  if (!scopeList(rec.scope).some((s) => s === 'api' || s === 'full')) {
    return restError(
      401,
      'INVALID_SESSION_ID',
      'This session is not valid for use with the REST API',
    );
  }
  const match = /^v(\d+)\.0(?:\/(.*))?$/.exec(rest);
  const major = Number(match?.[1]);
  if (!match || major < OLDEST || major > LATEST) {
    return restError(404, 'NOT_FOUND', 'The requested resource does not exist');
  }
  const version = `${major}.0`;
  const resource = match[2] ?? '';
  const base = `/services/data/v${version}`;

  if (resource === '') {
    return ok({
      limits: `${base}/limits`,
      query: `${base}/query`,
      queryAll: `${base}/queryAll`,
      sobjects: `${base}/sobjects`,
    });
  }
  if (resource === 'query' || resource === 'queryAll') {
    const q = query.get('q');
    const from = q === null ? null : /\bFROM\s+([A-Za-z][A-Za-z0-9_]*)/i.exec(q);
    if (!from?.[1]) {
      return restError(400, 'MALFORMED_QUERY', 'unexpected token: missing FROM clause');
    }
    const type = from[1].charAt(0).toUpperCase() + from[1].slice(1);
    return ok({
      totalSize: 1,
      done: true,
      records: [sampleRecord(ctx, type, version)],
    });
  }
  if (resource === 'limits') {
    return ok({
      DailyApiRequests: { Max: 15000, Remaining: 15000 - ctx.calls.rest },
    });
  }
  if (resource === 'sobjects') {
    return ok({
      encoding: 'UTF-8',
      maxBatchSize: 200,
      sobjects: Object.keys(KEY_PREFIXES).map((name) => ({
        name,
        label: name,
        keyPrefix: KEY_PREFIXES[name],
        queryable: true,
        urls: { sobject: `${base}/sobjects/${name}` },
      })),
    });
  }
  const sobject = /^sobjects\/([A-Za-z][A-Za-z0-9_]*)(?:\/([A-Za-z0-9]{15,18}))?$/.exec(resource);
  if (sobject?.[1]) {
    const record = sampleRecord(ctx, sobject[1], version);
    if (sobject[2] === undefined) {
      return ok({
        objectDescribe: { name: sobject[1], queryable: true },
        recentItems: [record],
      });
    }
    const id = String(record.Id);
    if (sobject[2] === id || sobject[2] === id.slice(0, 15)) return ok(record);
  }
  return restError(404, 'NOT_FOUND', 'The requested resource does not exist');
}
