import {
  type ClientApp,
  type ClientAppJson,
  parseClientApps,
} from '../functions/shared/client-apps.ts';
import { SERVICE_ROUTE_KEYS } from '../functions/shared/constants.ts';
import {
  parseSalesforceAppsContext,
  type SalesforceAppContext,
} from '../functions/shared/salesforce-apps.ts';
import {
  type ContextType,
  checkIdleWithinAbsolute,
  SETTINGS,
  type SettingName,
  SettingProblem,
  type SettingRow,
  type SettingValues,
} from '../functions/shared/settings-table.ts';
import { type TimeoutBudget, timeoutBudget } from './budget.ts';

/**
 * Settings of a {@link TokenBroker}. The CDK app feeds them from context under the same
 * names (`cdk.json` or `-c name=value`), so an error naming a setting names the context key.
 */
export interface TokenBrokerSettings {
  /** Login host: `https://login.salesforce.com` (default), `https://test.salesforce.com`, or a My Domain origin. */
  readonly salesforceLoginUrl?: string;
  /** Exact origins of the browser apps that may call `/refresh` and `/logout` with the session cookie. */
  readonly allowedOrigins?: readonly string[];
  /** Path prefixes allowed for `/login?return_to=` (default `['/']`). */
  readonly returnToPrefixes?: readonly string[];
  /** Scopes requested at login; must include `refresh_token` (or `offline_access`). Default `api refresh_token`. */
  readonly scopes?: string;
  /** Absolute session lifetime (default 30 days). */
  readonly sessionAbsoluteTtlSeconds?: number;
  /** Idle session lifetime (default 7 days). */
  readonly sessionIdleTtlSeconds?: number;
  /** A token committed less than this long ago is returned as is (default 5). */
  readonly reuseWindowSeconds?: number;
  /** Days an ended connection keeps its tombstone (default 30). */
  readonly endedConnectionRetentionDays?: number;
  /** Seconds of transient refresh failures before `Connection Refresh Failing` (default 900). */
  readonly failingAfterSeconds?: number;
  /**
   * The EventBridge bus the broker publishes to (README "Events"); absent: a bus the
   * stack creates.
   */
  readonly eventBusArn?: string;
  /** The sweep refreshes a connection whose last refresh is this many days old (default 20, below 30). */
  readonly keepAliveAfterDays?: number;
  /** The sweep's Salesforce calls per second (default 10). */
  readonly keepAliveRatePerSecond?: number;
  /** Learn each access token's expiry from Salesforce's introspection endpoint (default true). */
  readonly introspection?: boolean;
  /** A call without a hint refreshes a token expiring within this many seconds (default 300). */
  readonly refreshMarginSeconds?: number;
  /** When the sweep runs: an EventBridge Scheduler `rate(...)` or `cron(...)` expression (default once a day). */
  readonly sweepSchedule?: string;
  /** How long the functions cache the client credentials (default 300). */
  readonly secretCacheTtlSeconds?: number;
  /** Timeout of the functions that call Salesforce; also the lease (default 12). */
  readonly functionTimeoutSeconds?: number;
  /** Abort a Salesforce request after this long (default 8000). */
  readonly upstreamTimeoutMs?: number;
  /** Steady-state requests per second and burst, per route; `default` covers unknown paths. */
  readonly throttling?: ThrottlingSettings;
  /** Optional custom domain (e.g. `auth.example.com`); needs `customDomainCertificateArn`. */
  readonly customDomainName?: string;
  /** ACM certificate for `customDomainName`, in the stack's region. */
  readonly customDomainCertificateArn?: string;
  /** Use this existing `{"client_id","client_secret"}` secret (complete ARN) instead of creating one. */
  readonly existingClientSecretArn?: string;
  /**
   * The customer-managed KMS key (key ARN) that encrypts `existingClientSecretArn`, if it
   * is not the AWS managed `aws/secretsmanager` key: the functions that read the secret
   * get `kms:Decrypt` on it, only through Secrets Manager and only for that secret. The
   * key's own policy must also allow the function roles (or delegate to IAM).
   */
  readonly existingClientSecretKeyArn?: string;
  /** E-mail address subscribed to the alarm topic. */
  readonly alarmEmail?: string;
  /** Existing SNS topic for alarms; by default the broker creates one. */
  readonly alarmTopicArn?: string;
  /**
   * Keep the data when the stack is deleted (default `true`): the table has deletion
   * protection and, like the key, the secret and the logs, is retained. `false` is for
   * throwaway stacks only.
   */
  readonly retainData?: boolean;
  /** Retention of function and access logs, one of CloudWatch's values (default 90). */
  readonly logRetentionDays?: number;
  /** Powertools log level (default `INFO`). */
  readonly logLevel?: string;
  /** CloudWatch namespace of the broker's metrics (default `TokenBroker`). */
  readonly metricsNamespace?: string;
  /** `service` dimension of the metrics; one per deployment (default: the stack name). */
  readonly serviceName?: string;
  /**
   * Registered native, desktop and server-side apps of the one-time handoff, as JSON text
   * or the parsed array: `[{"client_id","redirect_uris"}]` (default none).
   */
  readonly clientApps?: string | readonly ClientAppJson[];
  /**
   * Hosts `/login?login_host=` may start a login at: DNS names or one-label wildcards
   * (default `login.salesforce.com`, `test.salesforce.com`, `*.my.salesforce.com`,
   * `*.sandbox.my.salesforce.com`; add `*.my.site.com` or a custom site domain to allow
   * Experience Cloud logins). Each app's own login host is allowed besides.
   */
  readonly loginHosts?: readonly string[];
  /**
   * Several connected apps, as JSON text or the parsed array:
   * `[{"name", "secret_arn"?, "login_url"?, "scopes"?}]`, the first being the default
   * (`/login?salesforce_app=<name>` picks another). Unset: the one app of the single-app
   * settings. See `functions/shared/salesforce-apps.ts`.
   */
  readonly salesforceApps?: string | readonly SalesforceAppContext[];
  /**
   * Run the functions that call Salesforce in private subnets of a VPC the stack creates,
   * behind NAT gateways with Elastic IPs, so Salesforce sees fixed addresses (the output
   * `EgressIps`) it can allow-list (default `false`).
   */
  readonly fixedEgressIp?: boolean;
  /** NAT gateways (and Elastic IPs) of `fixedEgressIp`: 1 (default) or 2, one per AZ. */
  readonly natGateways?: number;
  /**
   * With `fixedEgressIp`: KMS and Secrets Manager interface endpoints in the VPC (default
   * `true`); `false` sends those calls through the NAT gateways instead, saving the
   * endpoints' hourly charge.
   */
  readonly interfaceEndpoints?: boolean;
}

/**
 * The broker's functions, by the route they serve: `/<name>` for each, except `service`,
 * which serves the service API's five `AWS_IAM` route keys (`SERVICE_ROUTE_KEYS`).
 */
export type BrokerRoute =
  | 'refresh'
  | 'login'
  | 'callback'
  | 'logout'
  | 'session'
  | 'token'
  | 'service';
export const BROKER_ROUTES: readonly BrokerRoute[] = [
  'refresh',
  'login',
  'callback',
  'logout',
  'session',
  'token',
  'service',
];

/**
 * The API Gateway route keys a function serves: `ANY /<name>` (the function answers 405 to
 * other methods itself), or the service API's five IAM-authorized keys. Throttling applies
 * to each key.
 */
export function routeKeysOf(route: BrokerRoute): readonly string[] {
  return route === 'service' ? SERVICE_ROUTE_KEYS : [`ANY /${route}`];
}

export interface RouteThrottle {
  /** Steady-state requests per second. */
  readonly rateLimit: number;
  /** Bucket size: requests allowed at once. */
  readonly burstLimit: number;
}

export type ThrottlingSettings = {
  readonly [route in BrokerRoute | 'default']?: Partial<RouteThrottle>;
};

/** The settings with defaults applied and checked. */
export interface ResolvedSettings {
  salesforceLoginUrl: string;
  allowedOrigins: string[];
  returnToPrefixes: string[];
  scopes: string;
  sessionAbsoluteTtlSeconds: number;
  sessionIdleTtlSeconds: number;
  reuseWindowSeconds: number;
  endedConnectionRetentionDays: number;
  failingAfterSeconds: number;
  eventBusArn: string | undefined;
  keepAliveAfterDays: number;
  keepAliveRatePerSecond: number;
  introspection: boolean;
  refreshMarginSeconds: number;
  sweepSchedule: string;
  secretCacheTtlSeconds: number;
  budget: TimeoutBudget;
  throttling: Record<BrokerRoute | 'default', RouteThrottle>;
  customDomain: { domainName: string; certificateArn: string } | undefined;
  existingClientSecretArn: string | undefined;
  existingClientSecretKeyArn: string | undefined;
  alarmEmail: string | undefined;
  alarmTopicArn: string | undefined;
  retainData: boolean;
  logRetentionDays: number;
  logLevel: string;
  metricsNamespace: string;
  serviceName: string;
  clientApps: ClientApp[];
  loginHosts: string[];
  /** As written in context, checked; empty: the single app. */
  salesforceApps: SalesforceAppContext[];
  /** The VPC of `fixedEgressIp`; `undefined` when the functions run outside any VPC. */
  fixedEgress: FixedEgressSettings | undefined;
}

export interface FixedEgressSettings {
  /** NAT gateways, each with its Elastic IP, in as many AZs. */
  natGateways: number;
  /** KMS and Secrets Manager interface endpoints (otherwise through the NAT gateways). */
  interfaceEndpoints: boolean;
}

/**
 * Route limits are a safety valve, not a quota: HTTP APIs throttle each route for all
 * callers together (there is no per-client throttling), so the limits must pass every
 * ordinary peak and only stop a runaway fleet (a client release that refreshes in a loop
 * on every instance) before it spends the account's shared capacity. The numbers
 * (README "Settings", "Throttling defaults"):
 *
 * - Ordinary load is small and spiky. A few thousand app instances that each refresh once
 *   per access-token lifetime (15 min at the shortest) make single-digit requests per
 *   second; the peaks are synchronized (a deploy reloads every tab, clients retry together
 *   after an outage, a morning login wave). A burst of 500 on `/refresh` serves 500
 *   instances at the same instant, and 250/s refills it; 100 on each login route lets a
 *   whole office press "log in" in the same second.
 * - Lambda's default account concurrency is 1,000 per region (shared with every other
 *   function). Concurrency = rate x duration: at these rates and the usual durations
 *   (refresh 50-500 ms, callback about 1 s, login and logout well under) the broker uses
 *   about 200; even all bursts at once (990 requests) fit under 1,000, so a peak is
 *   answered by the broker or by API Gateway's 429, not by Lambda throttling (a 500 and
 *   the `Throttles` alarm). Durations grow toward the 12 s timeout only while Salesforce
 *   is slow, and then no rate limit keeps concurrency down.
 * - `service` applies to each of the service API's five route keys (backend jobs: a
 *   nightly sync takes a token per connection, offboarding ends 25 per call); its bursts
 *   (5 x 15) were made room for by `/session` (a page load's one metadata read) and
 *   `/logout` (one per user, rarely at the same instant), so the sum stays at 990.
 * - API Gateway's account limit (10,000 requests/s, burst 5,000 per region) is shared by
 *   all APIs in the account: the broker's sums (510/s, burst 990) leave most of it.
 * - Unknown paths (`default`) only reach the 404 function: scanners and typos.
 *
 * Scale every number with the account: an account whose Lambda concurrency is below
 * 1,000 (new accounts can have much less) should lower them in proportion or raise the
 * quota; a larger fleet raises them.
 */
export const DEFAULT_THROTTLING: Record<BrokerRoute | 'default', RouteThrottle> = {
  refresh: { rateLimit: 250, burstLimit: 500 },
  login: { rateLimit: 50, burstLimit: 100 },
  callback: { rateLimit: 50, burstLimit: 100 },
  logout: { rateLimit: 40, burstLimit: 75 },
  session: { rateLimit: 25, burstLimit: 50 },
  // One redemption per app login: a registered app's share of the login routes' rate.
  token: { rateLimit: 40, burstLimit: 80 },
  // Per route key of the service API (five of them; see SERVICE_ROUTE_KEYS).
  service: { rateLimit: 10, burstLimit: 15 },
  default: { rateLimit: 5, burstLimit: 10 },
};

/** The values CloudWatch Logs accepts for retention. */
export const LOG_RETENTION_DAYS = [
  1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288,
  3653,
] as const;

/** A broker setting holds a value it cannot work with; the message names the setting. */
export class SettingError extends Error {
  readonly setting: string;
  constructor(setting: string, problem: string) {
    super(`Invalid token broker setting "${setting}": ${problem}`);
    this.name = 'SettingError';
    this.setting = setting;
  }
}

/** How `readAppContext` reads a context key: the shared table's types, and two more. */
export type SettingContextType = ContextType | 'boolean' | 'throttling';

/**
 * A setting only the stack reads, in the shape of the rows of the shared table
 * (`functions/shared/settings-table.ts`), which holds every setting that reaches the
 * functions. These stay here so the function bundles do not carry them.
 */
export interface StackSettingRow<T> {
  /** How `readAppContext` reads the context key. */
  readonly type: SettingContextType;
  readonly fallback?: T;
  /** Checks a value that is set; throws a {@link SettingProblem}. */
  readonly check: (value: T) => T;
}

const matching =
  (pattern: RegExp, problem: string) =>
  (value: string): string => {
    if (!pattern.test(value)) throw new SettingProblem(`${problem}, got "${value}"`);
    return value;
  };

const unchecked = <T>(value: T): T => value;

/** The settings only the stack reads; cross-setting rules are the `resolve*` functions below. */
export const STACK_SETTINGS = {
  /** Checked with `upstreamTimeoutMs` by the timeout budget (`infra/budget.ts`). */
  functionTimeoutSeconds: { type: 'integer', check: unchecked<number> },
  throttling: { type: 'throttling', check: unchecked<ThrottlingSettings> },
  customDomainName: {
    type: 'text',
    check: matching(
      /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/,
      'must be a lower-case host name',
    ),
  },
  customDomainCertificateArn: {
    type: 'text',
    check: matching(
      /^arn:aws[\w-]*:acm:[a-z0-9-]+:\d{12}:certificate\/[\w-]+$/,
      'must be an ACM certificate ARN',
    ),
  },
  existingClientSecretArn: {
    type: 'text',
    check: matching(
      /^arn:aws[\w-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[\w/+=.@-]+-[A-Za-z0-9]{6}$/,
      'must be the complete secret ARN (ending in the 6-character suffix)',
    ),
  },
  existingClientSecretKeyArn: {
    type: 'text',
    check: matching(
      /^arn:aws[\w-]*:kms:([a-z0-9-]+):\d{12}:key\/(?:mrk-)?[0-9a-f-]{32,36}$/,
      'must be a KMS key ARN (arn:aws:kms:<region>:<account>:key/<key id>; not an alias)',
    ),
  },
  alarmEmail: {
    type: 'text',
    check: matching(/^[^\s@]+@[^\s@]+\.[^\s@]+$/, 'must be an e-mail address'),
  },
  alarmTopicArn: {
    type: 'text',
    check: matching(
      /^arn:aws[\w-]*:sns:[a-z0-9-]+:\d{12}:[\w-]{1,256}$/,
      'must be an SNS topic ARN',
    ),
  },
  retainData: { type: 'boolean', fallback: true, check: unchecked<boolean> },
  logRetentionDays: {
    type: 'integer',
    fallback: 90,
    check: (value: number) => {
      if (!(LOG_RETENTION_DAYS as readonly number[]).includes(value)) {
        throw new SettingProblem(`must be one of ${LOG_RETENTION_DAYS.join(', ')}, got ${value}`);
      }
      return value;
    },
  },
  fixedEgressIp: { type: 'boolean', fallback: false, check: unchecked<boolean> },
  natGateways: {
    type: 'integer',
    fallback: 1,
    check: (value: number) => {
      // An environment-agnostic stack sees two AZs (Fn::GetAZs), so at most two NATs.
      if (value !== 1 && value !== 2) {
        throw new SettingProblem(`must be 1 or 2 (one NAT gateway per AZ), got ${value}`);
      }
      return value;
    },
  },
  interfaceEndpoints: { type: 'boolean', fallback: true, check: unchecked<boolean> },
  eventBusArn: {
    type: 'text',
    check: matching(
      /^arn:aws[\w-]*:events:[a-z0-9-]+:\d{12}:event-bus\/[\w.\-/]{1,256}$/,
      'must be an EventBridge event bus ARN',
    ),
  },
  /** EventBridge Scheduler's expression; the sweep's own cut-off makes overlapping runs rare. */
  sweepSchedule: {
    type: 'text',
    fallback: 'cron(15 3 * * ? *)',
    check: matching(
      /^(rate\(\d{1,4} (minute|minutes|hour|hours|day|days)\)|cron\([\d*?,/#LW\- A-Z]{9,100}\))$/,
      'must be an EventBridge Scheduler rate(...) or cron(...) expression',
    ),
  },
} satisfies {
  [K in keyof TokenBrokerSettings]?: StackSettingRow<NonNullable<TokenBrokerSettings[K]>>;
};

/** Every context key of {@link TokenBrokerSettings} with how to read it (`infra/context.ts`). */
export const SETTING_CONTEXT_TYPES = {
  ...Object.fromEntries(
    Object.entries(SETTINGS)
      .filter(([, row]) => row.kind === 'setting')
      .map(([name, row]) => [name, row.type]),
  ),
  ...Object.fromEntries(Object.entries(STACK_SETTINGS).map(([name, row]) => [name, row.type])),
} as Record<keyof TokenBrokerSettings, SettingContextType>;

type Defaults = { serviceName: string; isToken: (value: string) => boolean };

/**
 * Applies defaults and checks every setting with the same rules as the functions'
 * `loadConfig` at cold start (one table, `functions/shared/settings-table.ts`), so a bad
 * value fails `cdk synth` instead of every invocation after deploy. Values that are CDK
 * tokens (unknown until deploy) are passed through unchecked.
 *
 * Long on purpose: one line per setting, so the body reads as the list of what a
 * deployment can set; each line's rules live in its row, not here.
 */
export function resolveSettings(
  settings: TokenBrokerSettings,
  defaults: Defaults,
): ResolvedSettings {
  const shared = <K extends SettingName & keyof TokenBrokerSettings>(
    name: K,
    value = settings[name],
  ): SettingValues[K] =>
    resolveRow(
      name,
      SETTINGS[name] as unknown as SettingRow<SettingValues[K]>,
      value as SettingValues[K] | undefined,
      defaults.isToken,
    );
  const stack = <K extends keyof typeof STACK_SETTINGS>(name: K): TokenBrokerSettings[K] =>
    resolveRow(
      name,
      STACK_SETTINGS[name] as unknown as StackSettingRow<TokenBrokerSettings[K]>,
      settings[name],
      defaults.isToken,
    );
  const sessions = resolveSessionLifetimes(
    shared('sessionAbsoluteTtlSeconds'),
    shared('sessionIdleTtlSeconds'),
  );
  return {
    salesforceLoginUrl: shared('salesforceLoginUrl'),
    allowedOrigins: [...shared('allowedOrigins')],
    returnToPrefixes: [...shared('returnToPrefixes')],
    scopes: shared('scopes'),
    ...sessions,
    reuseWindowSeconds: shared('reuseWindowSeconds'),
    endedConnectionRetentionDays: shared('endedConnectionRetentionDays'),
    failingAfterSeconds: shared('failingAfterSeconds'),
    eventBusArn: stack('eventBusArn'),
    keepAliveAfterDays: shared('keepAliveAfterDays'),
    keepAliveRatePerSecond: shared('keepAliveRatePerSecond'),
    introspection: shared('introspection'),
    refreshMarginSeconds: shared('refreshMarginSeconds'),
    sweepSchedule: stack('sweepSchedule') as string, // never undefined: the row has a fallback
    secretCacheTtlSeconds: shared('secretCacheTtlSeconds'),
    budget: resolveBudget(settings.functionTimeoutSeconds, shared('upstreamTimeoutMs')),
    clientApps: resolveClientApps(settings.clientApps),
    loginHosts: [...shared('loginHosts')],
    salesforceApps: resolveSalesforceApps(
      settings.salesforceApps,
      settings.existingClientSecretArn,
    ),
    throttling: resolveThrottling(settings.throttling ?? {}),
    customDomain: resolveCustomDomain(
      stack('customDomainName'),
      stack('customDomainCertificateArn'),
    ),
    ...resolveExistingSecret(
      stack('existingClientSecretArn'),
      stack('existingClientSecretKeyArn'),
      defaults.isToken,
    ),
    alarmEmail: stack('alarmEmail'),
    alarmTopicArn: stack('alarmTopicArn'),
    retainData: stack('retainData') as boolean, // never undefined: the row has a fallback
    logRetentionDays: stack('logRetentionDays') as number, // never undefined: the row has a fallback
    logLevel: shared('logLevel'),
    metricsNamespace: shared('metricsNamespace'),
    serviceName: shared('serviceName', settings.serviceName ?? defaults.serviceName),
    fixedEgress: resolveFixedEgress(
      stack('fixedEgressIp') as boolean, // never undefined: the row has a fallback
      stack('natGateways') as number,
      stack('interfaceEndpoints') as boolean,
    ),
  };
}

/** The row's fallback when unset; else its check, rethrown naming the context key. */
function resolveRow<T>(
  name: string,
  row: { readonly fallback?: T; readonly check: (value: T) => T },
  value: T | undefined,
  isToken: (value: string) => boolean,
): T {
  if (value === undefined) return row.fallback as T;
  if (typeof value === 'string' && isToken(value)) return value;
  try {
    if (!Array.isArray(value)) return row.check(value);
    // A list may hold tokens; check the items known at synth and keep the list as given.
    const known = value.filter((item) => typeof item !== 'string' || !isToken(item));
    if (known.length > 0 || known.length === value.length) row.check(known as T);
    return value;
  } catch (error) {
    if (error instanceof SettingProblem) throw new SettingError(name, error.message);
    throw error;
  }
}

function resolveSessionLifetimes(absolute: number, idle: number) {
  try {
    checkIdleWithinAbsolute(idle, absolute);
  } catch (error) {
    throw new SettingError('sessionIdleTtlSeconds', (error as Error).message);
  }
  return { sessionAbsoluteTtlSeconds: absolute, sessionIdleTtlSeconds: idle };
}

/**
 * The timeout budget; its derived variables must also be values the functions accept
 * (their rows' bounds), which an out-of-range function timeout would break first.
 */
function resolveBudget(
  functionTimeoutSeconds: number | undefined,
  upstreamTimeoutMs: number,
): TimeoutBudget {
  let budget: TimeoutBudget;
  try {
    budget = timeoutBudget({ functionTimeoutSeconds, upstreamTimeoutMs });
  } catch (error) {
    const message = (error as Error).message;
    const setting = /^"(\w+)"/.exec(message)?.[1] ?? 'functionTimeoutSeconds';
    throw new SettingError(setting, message.replace(/^"\w+" /, ''));
  }
  for (const name of ['leaseMs', 'waitBudgetMs', 'invocationDeadlineMs'] as const) {
    resolveRow('functionTimeoutSeconds', SETTINGS[name], budget[name], () => false);
  }
  return budget;
}

function resolveThrottling(
  overrides: ThrottlingSettings,
): Record<BrokerRoute | 'default', RouteThrottle> {
  const throttling = { ...DEFAULT_THROTTLING };
  for (const [route, value] of Object.entries(overrides)) {
    if (!(route in DEFAULT_THROTTLING)) {
      throw new SettingError(
        'throttling',
        `has unknown route "${route}"; use ${Object.keys(DEFAULT_THROTTLING).join(', ')}`,
      );
    }
    const key = route as BrokerRoute | 'default';
    const base = DEFAULT_THROTTLING[key];
    throttling[key] = {
      rateLimit: integer(
        value?.rateLimit,
        `throttling.${key}.rateLimit`,
        base.rateLimit,
        1,
        10_000,
      ),
      burstLimit: integer(
        value?.burstLimit,
        `throttling.${key}.burstLimit`,
        base.burstLimit,
        1,
        5_000,
      ),
    };
  }
  return throttling;
}

function resolveCustomDomain(
  domainName: string | undefined,
  certificateArn: string | undefined,
): ResolvedSettings['customDomain'] {
  if ((domainName === undefined) !== (certificateArn === undefined)) {
    throw new SettingError(
      domainName === undefined ? 'customDomainName' : 'customDomainCertificateArn',
      'customDomainName and customDomainCertificateArn go together',
    );
  }
  return domainName !== undefined && certificateArn !== undefined
    ? { domainName, certificateArn }
    : undefined;
}

/** Secrets Manager only uses a key in the secret's own region, and only for an existing secret. */
function resolveExistingSecret(
  secretArn: string | undefined,
  keyArn: string | undefined,
  isToken: (value: string) => boolean,
) {
  const secretRegion =
    secretArn !== undefined && !isToken(secretArn) ? secretArn.split(':')[3] : undefined;
  const keyRegion = keyArn !== undefined && !isToken(keyArn) ? keyArn.split(':')[3] : undefined;
  if (secretRegion && keyRegion && secretRegion !== keyRegion) {
    throw new SettingError(
      'existingClientSecretKeyArn',
      `is in ${keyRegion} but the secret is in ${secretRegion}; Secrets Manager needs a key in the secret's region`,
    );
  }
  if (keyArn !== undefined && secretArn === undefined) {
    throw new SettingError(
      'existingClientSecretKeyArn',
      'only applies to an existing secret: set existingClientSecretArn too (the secret the broker creates uses the AWS managed key)',
    );
  }
  return { existingClientSecretArn: secretArn, existingClientSecretKeyArn: keyArn };
}

function integer(
  value: number | undefined,
  name: string,
  fallback: number,
  min: number,
  max: number,
): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value))
    throw new SettingError(name, `must be a whole number, got ${value}`);
  if (value < min || value > max) {
    throw new SettingError(name, `must be between ${min} and ${max}, got ${value}`);
  }
  return value;
}

/**
 * `salesforceApps`: the functions' own parser (`functions/shared/salesforce-apps.ts`). The
 * first app may name its own `secret_arn` only when `existingClientSecretArn` does not
 * name another: both would be the default app's secret.
 */
function resolveSalesforceApps(
  value: TokenBrokerSettings['salesforceApps'],
  existingClientSecretArn: string | undefined,
): SalesforceAppContext[] {
  let apps: SalesforceAppContext[];
  try {
    apps = parseSalesforceAppsContext(value);
  } catch (error) {
    throw new SettingError('salesforceApps', (error as Error).message);
  }
  const first = apps[0];
  if (
    first?.secret_arn !== undefined &&
    existingClientSecretArn !== undefined &&
    existingClientSecretArn !== '' &&
    first.secret_arn !== existingClientSecretArn
  ) {
    throw new SettingError(
      'salesforceApps',
      `"${first.name}" is the default app: its "secret_arn" and existingClientSecretArn must not differ (set one)`,
    );
  }
  return apps;
}

/** `clientApps`: the functions' own parser (`functions/shared/client-apps.ts`), so both agree. */
function resolveClientApps(value: TokenBrokerSettings['clientApps']): ClientApp[] {
  try {
    return parseClientApps(value);
  } catch (error) {
    throw new SettingError('clientApps', (error as Error).message);
  }
}

/**
 * `natGateways` and `interfaceEndpoints` shape the VPC of `fixedEgressIp`; a value other
 * than their default without it would silently do nothing, so it fails synth instead.
 */
function resolveFixedEgress(
  fixedEgressIp: boolean,
  natGateways: number,
  interfaceEndpoints: boolean,
): FixedEgressSettings | undefined {
  if (fixedEgressIp) return { natGateways, interfaceEndpoints };
  if (natGateways !== STACK_SETTINGS.natGateways.fallback) {
    throw new SettingError('natGateways', 'only applies with fixedEgressIp: true');
  }
  if (interfaceEndpoints !== STACK_SETTINGS.interfaceEndpoints.fallback) {
    throw new SettingError('interfaceEndpoints', 'only applies with fixedEgressIp: true');
  }
  return undefined;
}
