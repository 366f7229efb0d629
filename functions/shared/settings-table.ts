/**
 * The settings that reach the broker functions, one row each: the CDK context key (the
 * row's name, also the `TokenBrokerSettings` property), the environment variable, the
 * default, the bounds and the one check both sides apply. `infra/settings.ts` checks the
 * context values with it at `cdk synth`, `infra/token-broker.ts` writes the functions'
 * environment from it, and `functions/broker/config.ts` reads that environment with it at
 * cold start, so a value the stack accepts is a value the functions accept
 * (`test/unit/settings-table.test.ts`). Settings only the stack reads (throttling, custom
 * domain, alarms, ...) have rows of the same shape in `infra/settings.ts`: they stay out
 * of the function bundles.
 *
 * Where the two sides used to differ, they now agree like this:
 *
 * - URLs (`salesforceLoginUrl`, `allowedOrigins`, `CALLBACK_URL`): https, or plain http on
 *   a loopback host, on both sides. The stack accepts loopback too (it used to refuse it
 *   for the login URL): the local run and the tests use it, and a deployed stack with a
 *   loopback login URL is harmless and plainly wrong. The functions now refuse http
 *   origins off loopback and wildcards, as the stack did.
 * - `scopes` must include `refresh_token` or `offline_access` on both sides (the
 *   functions used to accept any scope): without it Salesforce issues no refresh token
 *   and the broker cannot work.
 * - `sessionIdleTtlSeconds` is at most `sessionAbsoluteTtlSeconds` on both sides, and an
 *   empty `returnToPrefixes` list is refused on both (blank text means unset, though).
 * - Integer bounds are the same on both sides. The stack also derives `LEASE_MS`,
 *   `WAIT_BUDGET_MS`, `INVOCATION_DEADLINE_MS` and `UPSTREAM_TIMEOUT_MS` from one timeout
 *   budget (`infra/budget.ts`) with tighter relations between them; their rows here give
 *   the bounds the functions accept, which the budget's values fall within.
 * - `SALESFORCE_LOGIN_URL` defaults at the stack only: the functions refuse to start
 *   without it, as a missing login URL would silently send a sandbox's users to production.
 * - `serviceName`, `metricsNamespace` and `logLevel` are read at runtime by Powertools,
 *   with its own fallbacks, not by `loadConfig`.
 *
 * Adding a setting that reaches the functions is one row below, plus a check function
 * when the `integer`/`text`/`list` helpers' checks do not fit; then a property on
 * `TokenBrokerSettings` and `ResolvedSettings` (one line each in `resolveSettings`), the
 * key in `cdk.json`, a field in `BrokerConfig` read from the row, and the row's cases in
 * `test/unit/settings-table.test.ts` (a test fails until each is there). `readAppContext`
 * reads the key by the row's `type`. A structured value, e.g. `clientApps` (`CLIENT_APPS`,
 * a JSON list of registered apps), is a row whose `parse` runs `JSON.parse` before its
 * `check`, whose `format` is `JSON.stringify`, and whose `type` gets a reader in
 * `infra/context.ts`. The row order is the order of the variables in the synthesized
 * template: append, do not reorder.
 *
 * No imports beyond `./urls.ts` and `./login-hosts.ts`: both sides depend on this module.
 */
import { DEFAULT_LOGIN_HOSTS, loginHostPatternProblem } from './login-hosts.ts';
import { isLoopbackUrl } from './urls.ts';

/** A value a setting cannot take; each side rethrows it naming its own key for the setting. */
export class SettingProblem extends Error {
  constructor(problem: string) {
    super(problem);
    this.name = 'SettingProblem';
  }
}

/** How the CDK context reader reads the key (`-c key=value` gives text for every type). */
export type ContextType = 'text' | 'integer' | 'list' | 'boolean';

export interface SettingRow<T> {
  /**
   * `setting`: a `TokenBrokerSettings` property and CDK context key named like the row.
   * `derived`: a variable the construct fills in from its resources or the timeout budget.
   */
  readonly kind: 'setting' | 'derived';
  /** The functions' environment variable. */
  readonly variable: string;
  readonly type: ContextType;
  /** The value when the setting is unset (absent: the setting is required). */
  readonly fallback?: T;
  /** The functions refuse to start without the variable, whatever the fallback. */
  readonly requiredAtRuntime?: boolean;
  /** Inclusive bounds of an integer setting, on both sides. */
  readonly bounds?: { readonly min: number; readonly max: number };
  /** Checks a typed value (context, construct props); returns it normalized. */
  readonly check: (value: T) => T;
  /** Reads the variable's text (never blank: blank means unset) and checks it. */
  readonly parse: (text: string) => T;
  /** The variable's text for a checked value. */
  readonly format: (value: T) => string;
}

/** The value type of a row. */
export type SettingValue<R> = R extends SettingRow<infer T> ? T : never;

function integer(
  variable: string,
  fallback: number,
  min: number,
  max: number,
  kind: 'setting' | 'derived' = 'setting',
): SettingRow<number> {
  const check = (value: number) => {
    if (!Number.isInteger(value)) throw new SettingProblem(`must be a whole number, got ${value}`);
    if (value < min || value > max) {
      throw new SettingProblem(`must be between ${min} and ${max}, got ${value}`);
    }
    return value;
  };
  return {
    kind,
    variable,
    type: 'integer',
    fallback,
    bounds: { min, max },
    check,
    parse: (text) => {
      if (!/^\d+$/.test(text)) throw new SettingProblem(`must be a whole number, got "${text}"`);
      return check(Number(text));
    },
    format: String,
  };
}

/** `true` or `false` in the environment. */
function flag(variable: string, fallback: boolean): SettingRow<boolean> {
  const check = (value: boolean) => {
    if (typeof value !== 'boolean') throw new SettingProblem(`must be true or false`);
    return value;
  };
  return {
    kind: 'setting',
    variable,
    type: 'boolean',
    fallback,
    check,
    parse: (raw) => {
      if (raw !== 'true' && raw !== 'false') {
        throw new SettingProblem(`must be true or false, got "${raw}"`);
      }
      return raw === 'true';
    },
    format: String,
  };
}

function text<T extends string | undefined>(
  variable: string,
  options: {
    kind?: 'setting' | 'derived';
    fallback?: T;
    requiredAtRuntime?: boolean;
    check?: (value: string) => string;
  },
): SettingRow<T> {
  const check = (value: T) => (value === undefined ? value : (options.check?.(value) ?? value));
  return {
    kind: options.kind ?? 'setting',
    variable,
    type: 'text',
    ...('fallback' in options ? { fallback: options.fallback as T } : {}),
    ...(options.requiredAtRuntime ? { requiredAtRuntime: true } : {}),
    check: check as (value: T) => T,
    parse: (raw) => check(raw as T) as T,
    format: (value) => value ?? '',
  };
}

/** A comma-separated list in the environment; each item checked by `checkItems`. */
function list(
  variable: string,
  fallback: string[],
  checkItems: (items: string[]) => void,
): SettingRow<string[]> {
  const check = (items: string[]) => {
    checkItems(items);
    return items;
  };
  return {
    kind: 'setting',
    variable,
    type: 'list',
    fallback,
    check,
    parse: (raw) =>
      check(
        raw
          .split(',')
          .map((item) => item.trim())
          .filter(Boolean),
      ),
    format: (items) => items.join(','),
  };
}

function absoluteUrl(value: string, problem: string): URL {
  try {
    return new URL(value);
  } catch {
    throw new SettingProblem(problem);
  }
}

/** https, or plain http on loopback (the local run and the tests). */
function checkHttpsUrl(value: string): string {
  const url = absoluteUrl(value, `must be an absolute URL, got "${value}"`);
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopbackUrl(url))) {
    throw new SettingProblem(`must use https (plain http only on loopback), got "${value}"`);
  }
  return value;
}

function checkLoginUrl(value: string): string {
  const url = new URL(checkHttpsUrl(value));
  const bare = value.replace(/\/$/, '');
  if (url.origin !== bare) {
    throw new SettingProblem(
      `must be a bare origin such as https://login.salesforce.com, got "${value}"`,
    );
  }
  return bare;
}

function checkOrigins(origins: string[]): void {
  for (const value of origins) {
    if (value.includes('*')) {
      throw new SettingProblem('must list exact origins; wildcards are refused');
    }
    const url = absoluteUrl(value, `holds "${value}", which is not an origin`);
    if (url.origin !== value) {
      throw new SettingProblem(`holds "${value}"; write origins as ${url.origin}`);
    }
    if (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopbackUrl(url))) {
      throw new SettingProblem(`holds "${value}"; origins must use https (http only on loopback)`);
    }
  }
}

function checkPathPrefixes(prefixes: string[]): void {
  if (prefixes.length === 0) throw new SettingProblem('must list at least one path prefix');
  for (const value of prefixes) {
    if (!/^\/(?![/\\])[\w\-./~%]*$/.test(value)) {
      throw new SettingProblem(`holds "${value}", which is not an absolute path such as /app`);
    }
  }
}

function checkScopes(value: string): string {
  const scopes = value.split(/[\s,]+/).filter(Boolean);
  if (scopes.length === 0 || scopes.some((scope) => !/^[\w.:-]+$/.test(scope))) {
    throw new SettingProblem('must be scope names separated by spaces');
  }
  if (!scopes.includes('refresh_token') && !scopes.includes('offline_access')) {
    throw new SettingProblem(
      'must include refresh_token (or offline_access): without it Salesforce issues no refresh token',
    );
  }
  return scopes.join(' ');
}

/** The login host allow-list: patterns of `functions/shared/login-hosts.ts`. */
function checkLoginHosts(patterns: string[]): void {
  if (patterns.length === 0) throw new SettingProblem('must list at least one login host');
  for (const pattern of patterns) {
    const problem = loginHostPatternProblem(pattern);
    if (problem !== undefined) throw new SettingProblem(`holds "${pattern}", which ${problem}`);
  }
}

function checkRequired(value: string): string {
  if (!value.trim()) throw new SettingProblem('is required');
  return value;
}

/** Powertools' log levels. */
export const LOG_LEVELS = ['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR', 'CRITICAL', 'SILENT'];

const DAY_SECONDS = 86_400;

/**
 * Every variable of the broker functions' environment, in the template's order. Rows of
 * kind `setting` are named after their context key.
 */
export const SETTINGS = {
  tableName: text<string>('TABLE_NAME', { kind: 'derived', check: checkRequired }),
  kmsKeyId: text<string>('KMS_KEY_ID', { kind: 'derived', check: checkRequired }),
  clientSecretId: text<string>('CLIENT_SECRET_ID', { kind: 'derived', check: checkRequired }),
  secretCacheTtlSeconds: integer('SECRET_CACHE_TTL_SECONDS', 300, 0, DAY_SECONDS),
  salesforceLoginUrl: text<string>('SALESFORCE_LOGIN_URL', {
    fallback: 'https://login.salesforce.com',
    requiredAtRuntime: true,
    check: checkLoginUrl,
  }),
  scopes: text<string>('SALESFORCE_SCOPES', { fallback: 'api refresh_token', check: checkScopes }),
  /** The construct's own `/callback` URL (API endpoint or custom domain). */
  callbackUrl: text<string | undefined>('CALLBACK_URL', {
    kind: 'derived',
    fallback: undefined,
    check: checkHttpsUrl,
  }),
  returnToPrefixes: list('RETURN_TO_PREFIXES', ['/'], checkPathPrefixes),
  reuseWindowSeconds: integer('REUSE_WINDOW_SECONDS', 5, 0, 3600),
  /** Context key and variable; the stack writes the timeout budget's value. */
  upstreamTimeoutMs: integer('UPSTREAM_TIMEOUT_MS', 8000, 100, 29_000),
  leaseMs: integer('LEASE_MS', 12_000, 200, 900_000, 'derived'),
  waitBudgetMs: integer('WAIT_BUDGET_MS', 10_000, 50, 29_000, 'derived'),
  invocationDeadlineMs: integer('INVOCATION_DEADLINE_MS', 11_000, 500, 29_000, 'derived'),
  sessionAbsoluteTtlSeconds: integer(
    'SESSION_ABSOLUTE_TTL_SECONDS',
    30 * DAY_SECONDS,
    60,
    3650 * DAY_SECONDS,
  ),
  /** Also at most `sessionAbsoluteTtlSeconds` ({@link checkIdleWithinAbsolute}). */
  sessionIdleTtlSeconds: integer(
    'SESSION_IDLE_TTL_SECONDS',
    7 * DAY_SECONDS,
    60,
    3650 * DAY_SECONDS,
  ),
  /** Defaults to the stack name (the stack supplies it). */
  serviceName: text<string>('POWERTOOLS_SERVICE_NAME', {
    check: (value) => {
      if (!/^[\w.-]{1,255}$/.test(value)) {
        throw new SettingProblem(`must be letters, digits, ".", "_" or "-", got "${value}"`);
      }
      return value;
    },
  }),
  metricsNamespace: text<string>('POWERTOOLS_METRICS_NAMESPACE', {
    fallback: 'TokenBroker',
    check: (value) => {
      if (!/^[\w.\-/#:]{1,255}$/.test(value) || value.startsWith('AWS/')) {
        throw new SettingProblem(`is not a usable CloudWatch namespace: "${value}"`);
      }
      return value;
    },
  }),
  logLevel: text<string>('LOG_LEVEL', {
    fallback: 'INFO',
    check: (value) => {
      const level = value.toUpperCase();
      if (!LOG_LEVELS.includes(level)) {
        throw new SettingProblem(`must be one of ${LOG_LEVELS.join(', ')}, got "${level}"`);
      }
      return level;
    },
  }),
  /** Written even when empty, so `sam local invoke --env-vars` can override it. */
  allowedOrigins: list('ALLOWED_ORIGINS', [], checkOrigins),
  /**
   * Hosts `/login?login_host=` may start a login at (README "Login hosts and several
   * connected apps"); each app's own login host is allowed besides.
   */
  loginHosts: list('LOGIN_HOSTS', [...DEFAULT_LOGIN_HOSTS], checkLoginHosts),
  /**
   * How long a connection Salesforce (`invalid_grant`) or the service API ended keeps its
   * token-free tombstone (README "Ended connections"), in days.
   */
  endedConnectionRetentionDays: integer('ENDED_CONNECTION_RETENTION_DAYS', 30, 1, 3650),
  /**
   * After this long of unbroken transient refresh failures a connection is reported as
   * `Connection Refresh Failing`, once (README "Events"), in seconds.
   */
  failingAfterSeconds: integer('FAILING_AFTER_SECONDS', 900, 1, 86_400),
  /**
   * The sweep refreshes a live connection whose last refresh is this many days old (README
   * "Keep-alive and expiry"): below Salesforce's 30-day idle limit for refresh tokens.
   */
  keepAliveAfterDays: integer('KEEP_ALIVE_AFTER_DAYS', 20, 1, 29),
  /** The sweep's pace: Salesforce calls (keep-alive refreshes, expiry revocations) per second. */
  keepAliveRatePerSecond: integer('KEEP_ALIVE_RATE_PER_SECOND', 10, 1, 100),
  /**
   * Learn each new access token's expiry from Salesforce's introspection endpoint (README
   * "Access token expiry"); `false` turns it off.
   */
  introspection: flag('INTROSPECTION', true),
  /**
   * A call without a version hint refreshes a stored token that expires within this many
   * seconds, even inside the reuse window (README "Access token expiry").
   */
  refreshMarginSeconds: integer('REFRESH_MARGIN_SECONDS', 300, 0, 3_600),
};

export type SettingName = keyof typeof SETTINGS;

/** The value of every row: what the functions' environment is written from. */
export type SettingValues = { [K in SettingName]: SettingValue<(typeof SETTINGS)[K]> };

/** The idle lifetime cannot outlast the absolute one (both sides; the message names the idle one). */
export function checkIdleWithinAbsolute(idleSeconds: number, absoluteSeconds: number): void {
  if (idleSeconds > absoluteSeconds) {
    throw new SettingProblem(
      `must not exceed the absolute session lifetime (${absoluteSeconds}), got ${idleSeconds}`,
    );
  }
}

/** The functions' environment: each row's variable, written from the checked values. */
export function environmentOf(values: SettingValues): Record<string, string> {
  const environment: Record<string, string> = {};
  for (const name of Object.keys(SETTINGS) as SettingName[]) {
    const row = SETTINGS[name] as SettingRow<unknown>;
    environment[row.variable] = row.format(values[name]);
  }
  return environment;
}
