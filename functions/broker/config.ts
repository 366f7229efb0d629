/**
 * Configuration of the broker functions, read from environment variables once per cold
 * start. A missing or malformed variable throws a {@link ConfigError} naming it, so a
 * misconfigured deployment fails loudly at init instead of on the first request.
 */
import { type ClientApp, parseClientApps } from '../shared/client-apps.ts';
import { isLoopbackUrl } from '../shared/urls.ts';

export class ConfigError extends Error {
  readonly variable: string;
  constructor(variable: string, problem: string) {
    super(`Environment variable ${variable} ${problem}`);
    this.name = 'ConfigError';
    this.variable = variable;
  }
}

export interface BrokerConfig {
  /** DynamoDB table holding sessions and login transactions (`TABLE_NAME`). */
  tableName: string;
  /** KMS key id, ARN or alias for envelope encryption (`KMS_KEY_ID`). */
  kmsKeyId: string;
  /** Secrets Manager id of the `{"client_id","client_secret"}` secret (`CLIENT_SECRET_ID`). */
  clientSecretId: string;
  /** How long client credentials stay cached in memory (`SECRET_CACHE_TTL_SECONDS`, default 300). */
  secretCacheTtlMs: number;
  /** `https://login.salesforce.com`, a sandbox or My Domain URL (`SALESFORCE_LOGIN_URL`). */
  salesforceLoginUrl: URL;
  /** Scopes requested at login (`SALESFORCE_SCOPES`, default `api refresh_token`). */
  scopes: string;
  /** The public `/callback` URL registered in the connected app (`CALLBACK_URL`). */
  callbackUrl: URL | undefined;
  /** Exact origins allowed to use the session cookie (`ALLOWED_ORIGINS`, comma-separated). */
  allowedOrigins: readonly string[];
  /** Path prefixes allowed for `return_to` (`RETURN_TO_PREFIXES`, comma-separated, default `/`). */
  returnToPrefixes: readonly string[];
  /** A token committed less than this long ago is returned as is (`REUSE_WINDOW_SECONDS`, default 5). */
  reuseWindowMs: number;
  /** Abort a Salesforce request after this long (`UPSTREAM_TIMEOUT_MS`, default 8000). */
  upstreamTimeoutMs: number;
  /** Refresh lease duration; at least the function timeout (`LEASE_MS`, default 12000). */
  leaseMs: number;
  /** How long a waiter polls before answering 503 (`WAIT_BUDGET_MS`, default 10000). */
  waitBudgetMs: number;
  /**
   * By when (from the start of an invocation) `/callback` and `/logout` have done their
   * work and answer: the function timeout less a margin (`INVOCATION_DEADLINE_MS`, default
   * 11000, from `infra/budget.ts`).
   */
  invocationDeadlineMs: number;
  /** Absolute session lifetime (`SESSION_ABSOLUTE_TTL_SECONDS`, default 30 days). */
  sessionAbsoluteTtlMs: number;
  /** Idle session lifetime (`SESSION_IDLE_TTL_SECONDS`, default 7 days). */
  sessionIdleTtlMs: number;
  /** Registered native, desktop and server-side apps of the handoff (`CLIENT_APPS`, JSON). */
  clientApps: readonly ClientApp[];
}

type Env = Readonly<Record<string, string | undefined>>;

export function loadConfig(env: Env = process.env): BrokerConfig {
  const config: BrokerConfig = {
    tableName: requireString(env, 'TABLE_NAME'),
    kmsKeyId: requireString(env, 'KMS_KEY_ID'),
    clientSecretId: requireString(env, 'CLIENT_SECRET_ID'),
    secretCacheTtlMs: integer(env, 'SECRET_CACHE_TTL_SECONDS', 300, 0, 86_400) * 1000,
    salesforceLoginUrl: salesforceLoginUrl(env, 'SALESFORCE_LOGIN_URL'),
    scopes: scopes(env, 'SALESFORCE_SCOPES'),
    callbackUrl: optionalUrl(env, 'CALLBACK_URL'),
    allowedOrigins: origins(env, 'ALLOWED_ORIGINS'),
    returnToPrefixes: pathPrefixes(env, 'RETURN_TO_PREFIXES'),
    reuseWindowMs: integer(env, 'REUSE_WINDOW_SECONDS', 5, 0, 3600) * 1000,
    upstreamTimeoutMs: integer(env, 'UPSTREAM_TIMEOUT_MS', 8000, 100, 29_000),
    leaseMs: integer(env, 'LEASE_MS', 12_000, 200, 900_000),
    waitBudgetMs: integer(env, 'WAIT_BUDGET_MS', 10_000, 50, 29_000),
    invocationDeadlineMs: integer(env, 'INVOCATION_DEADLINE_MS', 11_000, 500, 29_000),
    sessionAbsoluteTtlMs:
      integer(env, 'SESSION_ABSOLUTE_TTL_SECONDS', 30 * 86_400, 60, 3650 * 86_400) * 1000,
    sessionIdleTtlMs:
      integer(env, 'SESSION_IDLE_TTL_SECONDS', 7 * 86_400, 60, 3650 * 86_400) * 1000,
    clientApps: clientApps(env, 'CLIENT_APPS'),
  };
  // The timeout budget (README "The refresh path"): a holder's upstream call must end before its lease.
  if (config.upstreamTimeoutMs >= config.leaseMs) {
    throw new ConfigError('UPSTREAM_TIMEOUT_MS', `must be lower than LEASE_MS (${config.leaseMs})`);
  }
  return config;
}

function clientApps(env: Env, name: string): ClientApp[] {
  try {
    return parseClientApps(env[name]);
  } catch (error) {
    throw new ConfigError(name, (error as Error).message);
  }
}

function requireString(env: Env, name: string): string {
  const value = env[name]?.trim();
  if (!value) throw new ConfigError(name, 'is required');
  return value;
}

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name]?.trim();
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw)) throw new ConfigError(name, `must be a whole number, got "${raw}"`);
  const value = Number(raw);
  if (value < min || value > max) {
    throw new ConfigError(name, `must be between ${min} and ${max}, got ${value}`);
  }
  return value;
}

function parseUrl(name: string, raw: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(name, `must be an absolute URL, got "${raw}"`);
  }
  if (url.protocol !== 'https:' && !isLoopbackUrl(url)) {
    throw new ConfigError(name, 'must use https (plain http is accepted only on loopback)');
  }
  return url;
}

function salesforceLoginUrl(env: Env, name: string): URL {
  const url = parseUrl(name, requireString(env, name));
  if (url.pathname !== '/' || url.search || url.hash || url.username || url.password) {
    throw new ConfigError(name, 'must be a bare origin such as https://login.salesforce.com');
  }
  return url;
}

function optionalUrl(env: Env, name: string): URL | undefined {
  const raw = env[name]?.trim();
  return raw ? parseUrl(name, raw) : undefined;
}

function scopes(env: Env, name: string): string {
  const raw = env[name]?.trim() || 'api refresh_token';
  const list = raw.split(/[\s,]+/).filter(Boolean);
  if (list.some((scope) => !/^[\w.:-]+$/.test(scope))) {
    throw new ConfigError(name, 'must be scope names separated by spaces');
  }
  return list.join(' ');
}

function list(env: Env, name: string): string[] {
  return (env[name] ?? '')
    .split(',')
    .map((item) => item.trim())
    .filter(Boolean);
}

function origins(env: Env, name: string): string[] {
  return list(env, name).map((origin) => {
    let url: URL;
    try {
      url = new URL(origin);
    } catch {
      throw new ConfigError(name, `holds "${origin}", which is not an origin`);
    }
    if (url.origin !== origin) {
      throw new ConfigError(name, `holds "${origin}"; write origins as ${url.origin}`);
    }
    return origin;
  });
}

function pathPrefixes(env: Env, name: string): string[] {
  const prefixes = list(env, name);
  if (prefixes.length === 0) return ['/'];
  for (const prefix of prefixes) {
    if (!/^\/(?![/\\])[\w\-./~%]*$/.test(prefix)) {
      throw new ConfigError(name, `holds "${prefix}", which is not an absolute path`);
    }
  }
  return prefixes;
}
