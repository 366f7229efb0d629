/**
 * The settings table ties the stack to the functions: every value `cdk synth` accepts
 * reaches `loadConfig` through the environment the construct writes and is accepted there
 * with the same meaning, and every value one side refuses the other refuses too, naming
 * its own key (the context key or the variable).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type BrokerConfig, ConfigError, loadConfig } from '../../functions/broker/config.ts';
import {
  environmentOf,
  SETTINGS,
  type SettingName,
  SettingProblem,
  type SettingRow,
  type SettingValues,
} from '../../functions/shared/settings-table.ts';
import { timeoutBudget } from '../../infra/budget.ts';
import {
  type ResolvedSettings,
  resolveSettings,
  SETTING_CONTEXT_TYPES,
  SettingError,
  type TokenBrokerSettings,
} from '../../infra/settings.ts';

const notToken = { serviceName: 'TokenBroker', isToken: () => false };

/** What the construct adds from its resources (`functionEnvironment`). */
const RESOURCES = {
  tableName: 'token-broker-table',
  kmsKeyId: 'arn:aws:kms:eu-west-1:111111111111:key/00000000-0000-4000-8000-000000000000',
  clientSecretId: 'arn:aws:secretsmanager:eu-west-1:111111111111:secret:sf-AbC123',
  callbackUrl: 'https://abc123defg.execute-api.eu-west-1.amazonaws.com/callback',
};

/** The environment the construct writes for these resolved settings. */
function environmentFor(resolved: ResolvedSettings): Record<string, string> {
  return environmentOf({ ...resolved, ...resolved.budget, ...RESOURCES });
}

type ContextSettingName = SettingName & keyof TokenBrokerSettings;

interface Case<K extends ContextSettingName> {
  accepted: SettingValues[K][];
  /** Values refused by the row itself (an empty list is "unset" in the environment). */
  refused: unknown[];
  /** The value as `loadConfig` holds it, in the setting's terms; absent: Powertools reads it. */
  fromConfig?: (config: BrokerConfig) => unknown;
}

const CASES: { [K in ContextSettingName]: Case<K> } = {
  secretCacheTtlSeconds: {
    accepted: [0, 300, 86_400],
    refused: [-1, 86_401, 1.5],
    fromConfig: (config) => config.secretCacheTtlMs / 1000,
  },
  salesforceLoginUrl: {
    accepted: [
      'https://login.salesforce.com',
      'https://acme.my.salesforce.com/',
      'http://127.0.0.1:4000',
      'http://localhost:8080',
    ],
    refused: [
      'http://login.salesforce.com',
      'https://login.salesforce.com/services',
      'login.salesforce.com',
      'https://user@login.salesforce.com',
      'https://Login.Salesforce.com',
      'ftp://127.0.0.1',
    ],
    fromConfig: (config) => config.salesforceLoginUrl.origin,
  },
  scopes: {
    accepted: ['api refresh_token', 'offline_access', 'api,refresh_token web'],
    refused: ['api', 'api web', 'api refresh_token!'],
    fromConfig: (config) => config.scopes,
  },
  returnToPrefixes: {
    accepted: [['/'], ['/app', '/admin']],
    refused: [['//evil.example'], ['/\\evil.example'], ['app'], ['/app', 'https://evil.example']],
    fromConfig: (config) => config.returnToPrefixes,
  },
  reuseWindowSeconds: {
    accepted: [0, 5, 3600],
    refused: [-1, 3601],
    fromConfig: (config) => config.reuseWindowMs / 1000,
  },
  upstreamTimeoutMs: {
    // Accepted values also fit the timeout budget of the default function timeout.
    accepted: [1000, 8000, 10_000],
    refused: [99, 29_001, 1000.5],
    fromConfig: (config) => config.upstreamTimeoutMs,
  },
  sessionAbsoluteTtlSeconds: {
    accepted: [30 * 86_400, 3650 * 86_400],
    refused: [59, 3650 * 86_400 + 1],
    fromConfig: (config) => config.sessionAbsoluteTtlMs / 1000,
  },
  sessionIdleTtlSeconds: {
    accepted: [60, 7 * 86_400, 30 * 86_400],
    refused: [59, 3650 * 86_400 + 1],
    fromConfig: (config) => config.sessionIdleTtlMs / 1000,
  },
  serviceName: {
    accepted: ['TokenBroker', 'acme-broker.prod_1'],
    refused: ['acme broker', 'acme/broker'],
  },
  metricsNamespace: {
    accepted: ['TokenBroker', 'Acme/Broker#1'],
    refused: ['AWS/Lambda', 'Acme Broker'],
  },
  logLevel: {
    accepted: ['INFO', 'debug', 'SILENT'],
    refused: ['VERBOSE', 'info!'],
  },
  allowedOrigins: {
    accepted: [
      [],
      ['https://app.example.com'],
      ['https://a.example.com:8443', 'http://localhost:5173'],
    ],
    refused: [
      ['*'],
      ['https://*.example.com'],
      ['https://app.example.com/'],
      ['http://app.example.com'],
      ['app.example.com'],
    ],
    // The broker's own origin (CALLBACK_URL's) is always added at runtime; see the test below.
    fromConfig: (config) =>
      config.allowedOrigins.filter((origin) => origin !== config.callbackUrl?.origin),
  },
  endedConnectionRetentionDays: {
    accepted: [1, 30, 3650],
    refused: [0, 3651],
    fromConfig: (config) => config.endedConnectionRetentionMs / 86_400_000,
  },
  failingAfterSeconds: {
    accepted: [1, 900, 86_400],
    refused: [0, 86_401],
    fromConfig: (config) => config.failingAfterMs / 1000,
  },
  keepAliveAfterDays: {
    accepted: [1, 20, 29],
    refused: [0, 30],
    fromConfig: (config) => config.keepAliveAfterMs / 86_400_000,
  },
  keepAliveRatePerSecond: {
    accepted: [1, 10, 100],
    refused: [0, 101],
    fromConfig: (config) => config.keepAliveRatePerSecond,
  },
  introspection: {
    accepted: [true, false],
    refused: ['yes', 1],
    fromConfig: (config) => config.introspection,
  },
  refreshMarginSeconds: {
    accepted: [0, 300, 3600],
    refused: [-1, 1.5, 3601],
    fromConfig: (config) => config.refreshMarginMs / 1000,
  },
  loginHosts: {
    accepted: [
      ['login.salesforce.com', '*.my.salesforce.com'],
      ['*.my.site.com', 'login.acme.example'],
      ['127.0.0.1', '127.0.0.2', 'localhost'],
    ],
    refused: [
      ['*.com'],
      ['*'],
      ['a.*.salesforce.com'],
      ['Login.Salesforce.com'],
      ['login.salesforce.com:443'],
      ['https://login.salesforce.com'],
      ['10.0.0.1'],
      ['user@login.salesforce.com'],
      ['*.127.0.0.1'],
    ],
    fromConfig: (config) => config.loginHosts,
  },
};

const NAMES = Object.keys(CASES) as ContextSettingName[];

/** The setting's value as the functions see it, from the environment the stack wrote. */
function runtimeValue(name: ContextSettingName, environment: Record<string, string>): unknown {
  const fromConfig = CASES[name].fromConfig;
  if (fromConfig) return fromConfig(loadConfig(environment));
  const row = SETTINGS[name] as SettingRow<unknown>;
  return row.parse(environment[row.variable] ?? '');
}

/** What each side throws for the setting: the stack's SettingError, the functions' ConfigError. */
function refusals(name: ContextSettingName, value: unknown) {
  const row = SETTINGS[name] as SettingRow<unknown>;
  const caught = (act: () => unknown) => {
    try {
      act();
    } catch (error) {
      return error;
    }
    return undefined;
  };
  const stack = caught(() => resolveSettings({ [name]: value } as TokenBrokerSettings, notToken));
  const text = row.format(value);
  const environment = { ...environmentFor(resolveSettings({}, notToken)), [row.variable]: text };
  const functions = caught(() =>
    CASES[name].fromConfig ? loadConfig(environment) : row.parse(text),
  );
  return { stack, functions, text };
}

describe('Settings table: the stack and the functions apply the same rules', () => {
  it('has a case for every setting the stack writes into the functions’ environment', () => {
    // Act
    const settingRows = Object.entries(SETTINGS)
      .filter(([, row]) => row.kind === 'setting')
      .map(([name]) => name);

    // Assert
    expect(NAMES.sort()).toEqual(settingRows.sort());
  });

  it.each(NAMES.flatMap((name) => CASES[name].accepted.map((value) => [name, value] as const)))(
    '%s: %j, accepted by the stack, reaches loadConfig with the same meaning',
    (name, value) => {
      // Prepare
      const resolved = resolveSettings({ [name]: value } as TokenBrokerSettings, notToken);
      const expected =
        name === 'upstreamTimeoutMs' ? resolved.budget.upstreamTimeoutMs : resolved[name];

      // Act
      const environment = environmentFor(resolved);

      // Assert
      expect(runtimeValue(name, environment)).toEqual(expected);
    },
  );

  it.each(NAMES.flatMap((name) => CASES[name].refused.map((value) => [name, value] as const)))(
    '%s: %j is refused by both sides, each naming its own key',
    (name, value) => {
      // Act
      const { stack, functions, text } = refusals(name, value);

      // Assert
      expect(text.trim()).not.toBe(''); // blank is "unset" in the environment
      expect(stack).toBeInstanceOf(SettingError);
      expect((stack as SettingError).setting).toBe(name);
      if (CASES[name].fromConfig) {
        expect(functions).toBeInstanceOf(ConfigError);
        expect((functions as ConfigError).variable).toBe(SETTINGS[name].variable);
      } else {
        expect(functions).toBeInstanceOf(SettingProblem);
      }
    },
  );

  it('refuses an idle lifetime longer than the absolute one on both sides', () => {
    // Prepare
    const settings = { sessionAbsoluteTtlSeconds: 3600, sessionIdleTtlSeconds: 7200 };
    const environment = {
      ...environmentFor(resolveSettings({}, notToken)),
      SESSION_ABSOLUTE_TTL_SECONDS: '3600',
      SESSION_IDLE_TTL_SECONDS: '7200',
    };

    // Act & Assert
    expect(() => resolveSettings(settings, notToken)).toThrow(
      'Invalid token broker setting "sessionIdleTtlSeconds"',
    );
    expect(() => loadConfig(environment)).toThrow(
      'Environment variable SESSION_IDLE_TTL_SECONDS must not exceed',
    );
    expect(loadConfig({ ...environment, SESSION_IDLE_TTL_SECONDS: '3600' }).sessionIdleTtlMs).toBe(
      3_600_000,
    );
  });

  it('every timeout budget the stack accepts is one the functions accept', () => {
    for (let functionTimeoutSeconds = 5; functionTimeoutSeconds <= 19; functionTimeoutSeconds++) {
      for (const upstreamTimeoutMs of [1000, functionTimeoutSeconds * 1000 - 2000]) {
        // Prepare
        const resolved = resolveSettings({ functionTimeoutSeconds, upstreamTimeoutMs }, notToken);

        // Act
        const config = loadConfig(environmentFor(resolved));

        // Assert
        expect(config).toMatchObject({
          leaseMs: resolved.budget.leaseMs,
          upstreamTimeoutMs: resolved.budget.upstreamTimeoutMs,
          waitBudgetMs: resolved.budget.waitBudgetMs,
          invocationDeadlineMs: resolved.budget.invocationDeadlineMs,
        });
      }
    }
  });

  it('gives the budget variables the budget’s defaults', () => {
    // Act
    const budget = timeoutBudget();

    // Assert
    expect({
      leaseMs: SETTINGS.leaseMs.fallback,
      waitBudgetMs: SETTINGS.waitBudgetMs.fallback,
      invocationDeadlineMs: SETTINGS.invocationDeadlineMs.fallback,
      upstreamTimeoutMs: SETTINGS.upstreamTimeoutMs.fallback,
    }).toEqual({
      leaseMs: budget.leaseMs,
      waitBudgetMs: budget.waitBudgetMs,
      invocationDeadlineMs: budget.invocationDeadlineMs,
      upstreamTimeoutMs: budget.upstreamTimeoutMs,
    });
  });

  it('reads every broker key cdk.json lists, and no other', () => {
    // Prepare: cdk.json lists every broker key but serviceName (default: the stack name).
    const appKeys = ['stackName', 'account', 'region', 'nag'];
    const cdkJson = JSON.parse(
      readFileSync(join(import.meta.dirname, '..', '..', 'cdk.json'), 'utf8'),
    ) as { context: Record<string, unknown> };
    const listed = Object.keys(cdkJson.context).filter(
      (key) => !key.startsWith('@') && !appKeys.includes(key),
    );

    // Act: the typed keys, and clientApps and salesforceApps (JSON lists read as they are;
    // see infra/context.ts)
    const read = [...Object.keys(SETTING_CONTEXT_TYPES), 'clientApps', 'salesforceApps'];

    // Assert
    expect(read.sort()).toEqual([...listed, 'serviceName'].sort());
  });

  it('writes each variable once, and the defaults the functions would apply themselves', () => {
    // Prepare
    const resolved = resolveSettings({}, notToken);

    // Act
    const environment = environmentFor(resolved);

    // Assert
    const variables = Object.values(SETTINGS).map((row) => row.variable);
    expect(new Set(variables).size).toBe(variables.length);
    expect(Object.keys(environment)).toEqual(variables);
    const withoutDefaults = Object.fromEntries(
      Object.entries(SETTINGS)
        .filter(([, row]) => row.kind === 'derived' || row.requiredAtRuntime)
        .map(([, row]) => [row.variable, environment[row.variable]]),
    );
    expect(loadConfig(withoutDefaults)).toEqual(loadConfig(environment));
  });
});
