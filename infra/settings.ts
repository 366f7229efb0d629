import {
  type ClientApp,
  type ClientAppJson,
  parseClientApps,
} from '../functions/shared/client-apps.ts';
import { isLoopbackUrl } from '../functions/shared/urls.ts';
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
}

export type BrokerRoute = 'refresh' | 'login' | 'callback' | 'logout' | 'session' | 'token';
export const BROKER_ROUTES: readonly BrokerRoute[] = [
  'refresh',
  'login',
  'callback',
  'logout',
  'session',
  'token',
];

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
 * - API Gateway's account limit (10,000 requests/s, burst 5,000 per region) is shared by
 *   all APIs in the account: the broker's sums (495/s, burst 990) leave most of it.
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
  logout: { rateLimit: 50, burstLimit: 100 },
  session: { rateLimit: 50, burstLimit: 100 },
  // One redemption per app login: a registered app's share of the login routes' rate.
  token: { rateLimit: 40, burstLimit: 80 },
  default: { rateLimit: 5, burstLimit: 10 },
};

/** The values CloudWatch Logs accepts for retention. */
export const LOG_RETENTION_DAYS = [
  1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288,
  3653,
] as const;

const LOG_LEVELS = ['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR', 'CRITICAL', 'SILENT'];

/** A broker setting holds a value it cannot work with; the message names the setting. */
export class SettingError extends Error {
  readonly setting: string;
  constructor(setting: string, problem: string) {
    super(`Invalid token broker setting "${setting}": ${problem}`);
    this.name = 'SettingError';
    this.setting = setting;
  }
}

/**
 * Applies defaults and checks every setting the way the functions' `loadConfig` will at
 * cold start, so a bad value fails `cdk synth` instead of every invocation after deploy.
 * Values that are CDK tokens (unknown until deploy) are passed through unchecked.
 */
export function resolveSettings(
  settings: TokenBrokerSettings,
  defaults: { serviceName: string; isToken: (value: string) => boolean },
): ResolvedSettings {
  const { isToken } = defaults;
  const check = (value: string | undefined, test: (v: string) => void) => {
    if (value !== undefined && !isToken(value)) test(value);
    return value;
  };

  const salesforceLoginUrl = settings.salesforceLoginUrl ?? 'https://login.salesforce.com';
  check(salesforceLoginUrl, (value) => {
    const url = parseUrl('salesforceLoginUrl', value);
    if (url.protocol !== 'https:') {
      throw new SettingError('salesforceLoginUrl', `must use https, got "${value}"`);
    }
    if (url.origin !== value.replace(/\/$/, '')) {
      throw new SettingError(
        'salesforceLoginUrl',
        `must be a bare origin such as https://login.salesforce.com, got "${value}"`,
      );
    }
  });

  const allowedOrigins = [...(settings.allowedOrigins ?? [])];
  for (const origin of allowedOrigins) {
    check(origin, (value) => {
      if (value === '*' || value.includes('*')) {
        throw new SettingError('allowedOrigins', 'must list exact origins; wildcards are refused');
      }
      const url = parseUrl('allowedOrigins', value);
      if (url.origin !== value) {
        throw new SettingError(
          'allowedOrigins',
          `holds "${value}"; write origins as ${url.origin}`,
        );
      }
      if (url.protocol !== 'https:' && !isLoopbackUrl(url)) {
        throw new SettingError(
          'allowedOrigins',
          `holds "${value}"; origins must use https (http only on loopback)`,
        );
      }
    });
  }

  const returnToPrefixes = [...(settings.returnToPrefixes ?? ['/'])];
  if (returnToPrefixes.length === 0) {
    throw new SettingError('returnToPrefixes', 'must list at least one path prefix');
  }
  for (const prefix of returnToPrefixes) {
    check(prefix, (value) => {
      if (!/^\/(?![/\\])[\w\-./~%]*$/.test(value)) {
        throw new SettingError(
          'returnToPrefixes',
          `holds "${value}", which is not an absolute path such as /app`,
        );
      }
    });
  }

  const scopes = (settings.scopes ?? 'api refresh_token').split(/[\s,]+/).filter(Boolean);
  if (scopes.some((scope) => !/^[\w.:-]+$/.test(scope))) {
    throw new SettingError('scopes', 'must be scope names separated by spaces');
  }
  if (!scopes.includes('refresh_token') && !scopes.includes('offline_access')) {
    throw new SettingError(
      'scopes',
      'must include refresh_token (or offline_access): without it Salesforce issues no refresh token',
    );
  }

  const sessionAbsoluteTtlSeconds = integer(
    settings.sessionAbsoluteTtlSeconds,
    'sessionAbsoluteTtlSeconds',
    30 * 86_400,
    60,
    3650 * 86_400,
  );
  const sessionIdleTtlSeconds = integer(
    settings.sessionIdleTtlSeconds,
    'sessionIdleTtlSeconds',
    7 * 86_400,
    60,
    sessionAbsoluteTtlSeconds,
  );
  const reuseWindowSeconds = integer(settings.reuseWindowSeconds, 'reuseWindowSeconds', 5, 0, 3600);
  const secretCacheTtlSeconds = integer(
    settings.secretCacheTtlSeconds,
    'secretCacheTtlSeconds',
    300,
    0,
    86_400,
  );

  let budget: TimeoutBudget;
  try {
    budget = timeoutBudget({
      functionTimeoutSeconds: settings.functionTimeoutSeconds,
      upstreamTimeoutMs: settings.upstreamTimeoutMs,
    });
  } catch (error) {
    const message = (error as Error).message;
    const setting = /^"(\w+)"/.exec(message)?.[1] ?? 'functionTimeoutSeconds';
    throw new SettingError(setting, message.replace(/^"\w+" /, ''));
  }

  const throttling = { ...DEFAULT_THROTTLING };
  for (const [route, value] of Object.entries(settings.throttling ?? {})) {
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

  const { customDomainName: domainName, customDomainCertificateArn: certificateArn } = settings;
  if ((domainName === undefined) !== (certificateArn === undefined)) {
    throw new SettingError(
      domainName === undefined ? 'customDomainName' : 'customDomainCertificateArn',
      'customDomainName and customDomainCertificateArn go together',
    );
  }
  check(domainName, (value) => {
    if (!/^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/.test(value)) {
      throw new SettingError('customDomainName', `must be a lower-case host name, got "${value}"`);
    }
  });
  check(certificateArn, (value) => {
    if (!/^arn:aws[\w-]*:acm:[a-z0-9-]+:\d{12}:certificate\/[\w-]+$/.test(value)) {
      throw new SettingError(
        'customDomainCertificateArn',
        `must be an ACM certificate ARN, got "${value}"`,
      );
    }
  });

  const existingClientSecretArn = check(settings.existingClientSecretArn, (value) => {
    if (
      !/^arn:aws[\w-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[\w/+=.@-]+-[A-Za-z0-9]{6}$/.test(
        value,
      )
    ) {
      throw new SettingError(
        'existingClientSecretArn',
        `must be the complete secret ARN (ending in the 6-character suffix), got "${value}"`,
      );
    }
  });

  const existingClientSecretKeyArn = check(settings.existingClientSecretKeyArn, (value) => {
    const key = /^arn:aws[\w-]*:kms:([a-z0-9-]+):\d{12}:key\/(?:mrk-)?[0-9a-f-]{32,36}$/.exec(
      value,
    );
    if (!key) {
      throw new SettingError(
        'existingClientSecretKeyArn',
        `must be a KMS key ARN (arn:aws:kms:<region>:<account>:key/<key id>; not an alias), got "${value}"`,
      );
    }
    // Secrets Manager only uses a key in the secret's own region.
    const secretRegion = existingClientSecretArn?.split(':')[3];
    if (secretRegion && !isToken(existingClientSecretArn ?? '') && secretRegion !== key[1]) {
      throw new SettingError(
        'existingClientSecretKeyArn',
        `is in ${key[1]} but the secret is in ${secretRegion}; Secrets Manager needs a key in the secret's region`,
      );
    }
  });
  if (existingClientSecretKeyArn !== undefined && existingClientSecretArn === undefined) {
    throw new SettingError(
      'existingClientSecretKeyArn',
      'only applies to an existing secret: set existingClientSecretArn too (the secret the broker creates uses the AWS managed key)',
    );
  }

  const alarmEmail = check(settings.alarmEmail, (value) => {
    if (!/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(value)) {
      throw new SettingError('alarmEmail', `must be an e-mail address, got "${value}"`);
    }
  });
  const alarmTopicArn = check(settings.alarmTopicArn, (value) => {
    if (!/^arn:aws[\w-]*:sns:[a-z0-9-]+:\d{12}:[\w-]{1,256}$/.test(value)) {
      throw new SettingError('alarmTopicArn', `must be an SNS topic ARN, got "${value}"`);
    }
  });

  const logRetentionDays = settings.logRetentionDays ?? 90;
  if (!(LOG_RETENTION_DAYS as readonly number[]).includes(logRetentionDays)) {
    throw new SettingError(
      'logRetentionDays',
      `must be one of ${LOG_RETENTION_DAYS.join(', ')}, got ${logRetentionDays}`,
    );
  }

  const logLevel = (settings.logLevel ?? 'INFO').toUpperCase();
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new SettingError(
      'logLevel',
      `must be one of ${LOG_LEVELS.join(', ')}, got "${logLevel}"`,
    );
  }

  const metricsNamespace = settings.metricsNamespace ?? 'TokenBroker';
  check(metricsNamespace, (value) => {
    if (!/^[\w.\-/#:]{1,255}$/.test(value) || value.startsWith('AWS/')) {
      throw new SettingError(
        'metricsNamespace',
        `is not a usable CloudWatch namespace: "${value}"`,
      );
    }
  });
  const serviceName = settings.serviceName ?? defaults.serviceName;
  check(serviceName, (value) => {
    if (!/^[\w.-]{1,255}$/.test(value)) {
      throw new SettingError(
        'serviceName',
        `must be letters, digits, ".", "_" or "-", got "${value}"`,
      );
    }
  });

  let clientApps: ClientApp[];
  try {
    clientApps = parseClientApps(settings.clientApps);
  } catch (error) {
    throw new SettingError('clientApps', (error as Error).message);
  }

  return {
    salesforceLoginUrl: salesforceLoginUrl.replace(/\/$/, ''),
    allowedOrigins,
    returnToPrefixes,
    scopes: scopes.join(' '),
    sessionAbsoluteTtlSeconds,
    sessionIdleTtlSeconds,
    reuseWindowSeconds,
    secretCacheTtlSeconds,
    budget,
    throttling,
    customDomain:
      domainName !== undefined && certificateArn !== undefined
        ? { domainName, certificateArn }
        : undefined,
    existingClientSecretArn,
    existingClientSecretKeyArn,
    alarmEmail,
    alarmTopicArn,
    retainData: settings.retainData ?? true,
    logRetentionDays,
    logLevel,
    metricsNamespace,
    serviceName,
    clientApps,
  };
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

function parseUrl(name: string, value: string): URL {
  try {
    return new URL(value);
  } catch {
    throw new SettingError(name, `must be an absolute URL, got "${value}"`);
  }
}
