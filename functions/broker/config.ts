/**
 * Configuration of the broker functions, read from environment variables once per cold
 * start. A missing or malformed variable throws a {@link ConfigError} naming it, so a
 * misconfigured deployment fails loudly at init instead of on the first request.
 */

import { type ClientApp, parseClientApps } from '../shared/client-apps.ts';
import {
  parseSalesforceApps,
  type SalesforceAppSettings,
  SINGLE_APP_NAME,
} from '../shared/salesforce-apps.ts';
import {
  checkIdleWithinAbsolute,
  SETTINGS,
  SettingProblem,
  type SettingRow,
} from '../shared/settings-table.ts';

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
  /**
   * Exact origins allowed to use the session cookie (`ALLOWED_ORIGINS`, comma-separated),
   * plus the broker's own public origin (that of `CALLBACK_URL`), always: a page the broker's
   * own host serves must work in the deployed stack as it does in `npm start`.
   */
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
  /**
   * Login host patterns `/login?login_host=` accepts (`LOGIN_HOSTS`, comma-separated;
   * `functions/shared/login-hosts.ts`). Each app's own login host is accepted besides.
   */
  loginHosts: readonly string[];
  /**
   * The connected apps (`SALESFORCE_APPS`, JSON), the first being the default. Without the
   * variable, the one app `default` of `CLIENT_SECRET_ID`, `SALESFORCE_LOGIN_URL` and
   * `SALESFORCE_SCOPES`.
   */
  salesforceApps: readonly SalesforceAppSettings[];
  /**
   * How long an ended connection's tombstone is kept (`ENDED_CONNECTION_RETENTION_DAYS`,
   * default 30 days), in ms.
   */
  endedConnectionRetentionMs: number;
  /**
   * After this long of transient refresh failures, `Connection Refresh Failing` is
   * reported once (`FAILING_AFTER_SECONDS`, default 900), in ms.
   */
  failingAfterMs: number;
  /**
   * The sweep refreshes a connection whose last refresh is this old (`KEEP_ALIVE_AFTER_DAYS`,
   * default 20 days; `KEEP_ALIVE_AFTER_SECONDS`, local runs only, overrides it), in ms.
   */
  keepAliveAfterMs: number;
  /** The sweep's Salesforce calls per second (`KEEP_ALIVE_RATE_PER_SECOND`, default 10). */
  keepAliveRatePerSecond: number;
  /** Introspect each new access token for its expiry (`INTROSPECTION`, default true). */
  introspection: boolean;
  /**
   * A call without a hint refreshes a stored token expiring within this long
   * (`REFRESH_MARGIN_SECONDS`, default 300), in ms.
   */
  refreshMarginMs: number;
}

type Env = Readonly<Record<string, string | undefined>>;

/** Reads every variable through its row of the settings table (`functions/shared/settings-table.ts`). */
export function loadConfig(env: Env = process.env): BrokerConfig {
  const read = <T>(row: SettingRow<T>): T => readVariable(env, row);
  const callbackUrl = read(SETTINGS.callbackUrl);
  const config: BrokerConfig = {
    tableName: read(SETTINGS.tableName),
    kmsKeyId: read(SETTINGS.kmsKeyId),
    clientSecretId: read(SETTINGS.clientSecretId),
    secretCacheTtlMs: read(SETTINGS.secretCacheTtlSeconds) * 1000,
    salesforceLoginUrl: new URL(read(SETTINGS.salesforceLoginUrl)),
    scopes: read(SETTINGS.scopes),
    callbackUrl: callbackUrl === undefined ? undefined : new URL(callbackUrl),
    allowedOrigins: withOwnOrigin(read(SETTINGS.allowedOrigins), callbackUrl),
    clientApps: clientApps(env),
    returnToPrefixes: read(SETTINGS.returnToPrefixes),
    reuseWindowMs: read(SETTINGS.reuseWindowSeconds) * 1000,
    upstreamTimeoutMs: read(SETTINGS.upstreamTimeoutMs),
    leaseMs: read(SETTINGS.leaseMs),
    waitBudgetMs: read(SETTINGS.waitBudgetMs),
    invocationDeadlineMs: read(SETTINGS.invocationDeadlineMs),
    sessionAbsoluteTtlMs: read(SETTINGS.sessionAbsoluteTtlSeconds) * 1000,
    sessionIdleTtlMs: read(SETTINGS.sessionIdleTtlSeconds) * 1000,
    loginHosts: read(SETTINGS.loginHosts),
    salesforceApps: [],
    endedConnectionRetentionMs: read(SETTINGS.endedConnectionRetentionDays) * 86_400_000,
    failingAfterMs: read(SETTINGS.failingAfterSeconds) * 1000,
    keepAliveAfterMs: keepAliveAfterMs(env, read(SETTINGS.keepAliveAfterDays)),
    keepAliveRatePerSecond: read(SETTINGS.keepAliveRatePerSecond),
    introspection: read(SETTINGS.introspection),
    refreshMarginMs: read(SETTINGS.refreshMarginSeconds) * 1000,
  };
  config.salesforceApps = salesforceApps(env, config);
  checkCrossRules(config);
  return config;
}

/**
 * `CLIENT_APPS` (JSON) is parsed by the one module both sides use
 * (`functions/shared/client-apps.ts`), not by a row of the table: its value is a list of
 * objects, which the table's scalar and comma-list types do not cover.
 */
function clientApps(env: Env): ClientApp[] {
  try {
    return parseClientApps(env.CLIENT_APPS);
  } catch (error) {
    throw new ConfigError('CLIENT_APPS', (error as Error).message);
  }
}

/**
 * `SALESFORCE_APPS` (JSON, like `CLIENT_APPS` outside the table). When set, its first app
 * must be the one of the single-app variables, which the stack writes from it: a mismatch
 * means the environment was edited by hand and the two would disagree on the default app.
 */
function salesforceApps(env: Env, config: BrokerConfig): SalesforceAppSettings[] {
  const single: SalesforceAppSettings = {
    name: SINGLE_APP_NAME,
    secretId: config.clientSecretId,
    loginUrl: config.salesforceLoginUrl.origin,
    scopes: config.scopes,
  };
  let apps: SalesforceAppSettings[];
  try {
    apps = parseSalesforceApps(env.SALESFORCE_APPS);
  } catch (error) {
    throw new ConfigError('SALESFORCE_APPS', (error as Error).message);
  }
  const [first] = apps;
  if (first === undefined) return [single];
  if (
    first.secretId !== single.secretId ||
    first.loginUrl !== single.loginUrl ||
    first.scopes !== single.scopes
  ) {
    throw new ConfigError(
      'SALESFORCE_APPS',
      'must start with the app of CLIENT_SECRET_ID, SALESFORCE_LOGIN_URL and SALESFORCE_SCOPES',
    );
  }
  return apps;
}

/**
 * `KEEP_ALIVE_AFTER_DAYS` in ms, or `KEEP_ALIVE_AFTER_SECONDS` when set: a local override
 * (README "Run it locally") so `npm start` shows the keep-alive within minutes. The stack
 * never writes it.
 */
function keepAliveAfterMs(env: Env, days: number): number {
  const seconds = env.KEEP_ALIVE_AFTER_SECONDS?.trim();
  if (!seconds) return days * 86_400_000;
  if (!/^\d{1,9}$/.test(seconds) || Number(seconds) < 1) {
    throw new ConfigError(
      'KEEP_ALIVE_AFTER_SECONDS',
      `must be a whole number of seconds, got "${seconds}"`,
    );
  }
  return Number(seconds) * 1000;
}

function withOwnOrigin(origins: readonly string[], callbackUrl: string | undefined): string[] {
  if (callbackUrl === undefined) return [...origins];
  const own = new URL(callbackUrl).origin;
  return origins.includes(own) ? [...origins] : [...origins, own];
}

/** Rules between variables; the stack checks the same ones on its settings. */
function checkCrossRules(config: BrokerConfig): void {
  try {
    checkIdleWithinAbsolute(config.sessionIdleTtlMs / 1000, config.sessionAbsoluteTtlMs / 1000);
  } catch (error) {
    throw asConfigError(SETTINGS.sessionIdleTtlSeconds.variable, error);
  }
  // The timeout budget (README "The refresh path"): a holder's upstream call must end before
  // its lease. The stack's budget (infra/budget.ts) keeps 2 s more between them.
  if (config.upstreamTimeoutMs >= config.leaseMs) {
    throw new ConfigError(
      SETTINGS.upstreamTimeoutMs.variable,
      `must be lower than ${SETTINGS.leaseMs.variable} (${config.leaseMs})`,
    );
  }
}

function readVariable<T>(env: Env, row: SettingRow<T>): T {
  const raw = env[row.variable]?.trim();
  if (!raw) {
    if (row.requiredAtRuntime || !('fallback' in row)) {
      throw new ConfigError(row.variable, 'is required');
    }
    return row.fallback as T;
  }
  try {
    return row.parse(raw);
  } catch (error) {
    throw asConfigError(row.variable, error);
  }
}

function asConfigError(variable: string, error: unknown): unknown {
  return error instanceof SettingProblem ? new ConfigError(variable, error.message) : error;
}
