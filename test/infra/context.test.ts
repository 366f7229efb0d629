import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App } from 'aws-cdk-lib';
import { describe, expect, it } from 'vitest';
import { buildApp } from '../../infra/app.ts';
import { timeoutBudget } from '../../infra/budget.ts';
import { ContextError, readAppContext } from '../../infra/context.ts';
import { resolveSettings, type TokenBrokerSettings } from '../../infra/settings.ts';
import { cdkJsonContext, repoRoot } from './synth.ts';

const contextOf = (context: Record<string, unknown>) =>
  readAppContext(new App({ context: { ...cdkJsonContext(), ...context } }).node);

const notToken = { serviceName: 'TokenBroker', isToken: () => false };

describe('Function: readAppContext', () => {
  it('reads cdk.json as it is shipped', () => {
    // Act
    const context = contextOf({});

    // Assess
    expect(context).toMatchObject({ stackName: 'TokenBroker', nag: true, account: undefined });
    expect(context.broker).toMatchObject({
      salesforceLoginUrl: 'https://login.salesforce.com',
      allowedOrigins: [],
      returnToPrefixes: ['/'],
      retainData: true,
      customDomainName: undefined,
      alarmEmail: undefined,
      fixedEgressIp: false,
      natGateways: 1,
      interfaceEndpoints: true,
    });
    expect(resolveSettings(context.broker, notToken).fixedEgress).toBeUndefined();
    expect(resolveSettings(context.broker, notToken).budget).toEqual({
      functionTimeoutMs: 12_000,
      leaseMs: 12_000,
      upstreamTimeoutMs: 8_000,
      waitBudgetMs: 10_000,
      invocationDeadlineMs: 11_000,
    });
  });

  it('accepts the string forms that -c key=value produces', () => {
    // Act
    const context = contextOf({
      allowedOrigins: 'https://a.example.com, https://b.example.com',
      returnToPrefixes: '["/app","/admin"]',
      retainData: 'false',
      functionTimeoutSeconds: '15',
      throttling: '{"refresh":{"rateLimit":"200"}}',
      nag: 'false',
      region: 'eu-west-1',
    });

    // Assess
    expect(context.nag).toBe(false);
    expect(context.region).toBe('eu-west-1');
    expect(context.broker).toMatchObject({
      allowedOrigins: ['https://a.example.com', 'https://b.example.com'],
      returnToPrefixes: ['/app', '/admin'],
      retainData: false,
      functionTimeoutSeconds: 15,
      throttling: { refresh: { rateLimit: 200 } },
    });
    expect(resolveSettings(context.broker, notToken).throttling.refresh).toEqual({
      rateLimit: 200,
      burstLimit: 500,
    });
  });

  it.each([
    [{ retainData: 'maybe' }, 'retainData'],
    [{ functionTimeoutSeconds: 'twelve' }, 'functionTimeoutSeconds'],
    [{ allowedOrigins: 42 }, 'allowedOrigins'],
    [{ throttling: '{"refresh":' }, 'throttling'],
    [{ throttling: '{"refresh":{"rate":5}}' }, 'throttling.refresh'],
    [{ throttling: '{"refresh":{"rateLimit":"x"}}' }, 'throttling.refresh.rateLimit'],
    [{ stackName: '1-broker' }, 'stackName'],
    [{ account: '1234' }, 'account'],
    [{ region: 'Frankfurt' }, 'region'],
    [{ alarmEmail: ['ops@example.com'] }, 'alarmEmail'],
    [{ fixedEgressIp: 'yes' }, 'fixedEgressIp'],
    [{ natGateways: 'two' }, 'natGateways'],
  ])('refuses %j, naming "%s"', (context, key) => {
    // Act & Assess
    expect(() => contextOf(context)).toThrow(ContextError);
    expect(() => contextOf(context)).toThrow(`Invalid context "${key}"`);
  });
});

describe('Function: resolveSettings', () => {
  it.each([
    [{ salesforceLoginUrl: 'http://login.salesforce.com' }, 'salesforceLoginUrl'],
    [{ salesforceLoginUrl: 'https://login.salesforce.com/services' }, 'salesforceLoginUrl'],
    [{ allowedOrigins: ['*'] }, 'allowedOrigins'],
    [{ allowedOrigins: ['http://app.example.com'] }, 'allowedOrigins'],
    [{ allowedOrigins: ['https://app.example.com/'] }, 'allowedOrigins'],
    [{ returnToPrefixes: ['//evil.example'] }, 'returnToPrefixes'],
    [{ returnToPrefixes: [] }, 'returnToPrefixes'],
    [{ scopes: 'api web' }, 'scopes'],
    [{ sessionIdleTtlSeconds: 40 * 86_400 }, 'sessionIdleTtlSeconds'],
    [{ reuseWindowSeconds: -1 }, 'reuseWindowSeconds'],
    [{ functionTimeoutSeconds: 25 }, 'functionTimeoutSeconds'],
    [{ functionTimeoutSeconds: 12, upstreamTimeoutMs: 11_000 }, 'upstreamTimeoutMs'],
    [{ throttling: { everything: { rateLimit: 1 } } }, 'throttling'],
    [{ throttling: { refresh: { burstLimit: 0 } } }, 'throttling.refresh.burstLimit'],
    [{ customDomainName: 'auth.example.com' }, 'customDomainCertificateArn'],
    [
      {
        customDomainName: 'Auth.Example.com',
        customDomainCertificateArn: 'arn:aws:acm:eu-west-1:111111111111:certificate/abc',
      },
      'customDomainName',
    ],
    [
      { existingClientSecretArn: 'arn:aws:secretsmanager:eu-west-1:111111111111:secret:sf/client' },
      'existingClientSecretArn',
    ],
    [{ alarmEmail: 'ops' }, 'alarmEmail'],
    [{ alarmTopicArn: 'ops-alarms' }, 'alarmTopicArn'],
    [{ logRetentionDays: 10 }, 'logRetentionDays'],
    [{ logLevel: 'VERBOSE' }, 'logLevel'],
    [{ metricsNamespace: 'AWS/Lambda' }, 'metricsNamespace'],
    [{ clientApps: '[{"client_id":"ios","redirect_uris":["myapp:/cb"]}]' }, 'clientApps'],
    [{ clientApps: [{ client_id: 'ios', redirect_uris: [] }] }, 'clientApps'],
    [{ clientApps: '{' }, 'clientApps'],
    [{ fixedEgressIp: true, natGateways: 3 }, 'natGateways'],
    [{ fixedEgressIp: true, natGateways: 0 }, 'natGateways'],
    [{ natGateways: 2 }, 'natGateways'],
    [{ interfaceEndpoints: false }, 'interfaceEndpoints'],
  ])('refuses %j, naming "%s"', (settings, name) => {
    // Act & Assess
    expect(() => resolveSettings(settings as TokenBrokerSettings, notToken)).toThrow(
      `Invalid token broker setting "${name}"`,
    );
  });

  it('reads clientApps from cdk.json (an array) and from -c (JSON text) alike', () => {
    // Prepare
    const apps = [{ client_id: 'ios', redirect_uris: ['com.example.app:/oauth2redirect'] }];

    // Act
    const fromArray = resolveSettings(contextOf({ clientApps: apps }).broker, notToken);
    const fromText = resolveSettings(
      contextOf({ clientApps: JSON.stringify(apps) }).broker,
      notToken,
    );
    const shipped = resolveSettings(contextOf({}).broker, notToken);

    // Assess
    expect(fromArray.clientApps).toEqual([
      { clientId: 'ios', redirectUris: ['com.example.app:/oauth2redirect'] },
    ]);
    expect(fromText.clientApps).toEqual(fromArray.clientApps);
    expect(shipped.clientApps).toEqual([]);
  });

  it('reads fixedEgressIp and its VPC settings from -c text', () => {
    // Act
    const context = contextOf({
      fixedEgressIp: 'true',
      natGateways: '2',
      interfaceEndpoints: 'false',
    });

    // Assess
    expect(resolveSettings(context.broker, notToken).fixedEgress).toEqual({
      natGateways: 2,
      interfaceEndpoints: false,
    });
    expect(resolveSettings({ fixedEgressIp: true }, notToken).fixedEgress).toEqual({
      natGateways: 1,
      interfaceEndpoints: true,
    });
  });

  it('accepts loopback http origins for local development', () => {
    expect(
      resolveSettings({ allowedOrigins: ['http://localhost:5173'] }, notToken).allowedOrigins,
    ).toEqual(['http://localhost:5173']);
  });
});

describe('Function: timeoutBudget', () => {
  it('keeps upstream < lease = function timeout, and waiters under the timeout', () => {
    for (const functionTimeoutSeconds of [5, 12, 19]) {
      const budget = timeoutBudget({ functionTimeoutSeconds, upstreamTimeoutMs: 3000 });
      expect(budget.leaseMs).toBe(functionTimeoutSeconds * 1000);
      expect(budget.upstreamTimeoutMs).toBeLessThan(budget.leaseMs);
      expect(budget.waitBudgetMs).toBeLessThan(budget.functionTimeoutMs);
      expect(budget.invocationDeadlineMs).toBe(budget.functionTimeoutMs - 1000);
    }
  });
});

describe('App: infra/app.ts', () => {
  it('rethrows an invalid setting as the context key', () => {
    // Arrange
    const app = new App({ context: { ...cdkJsonContext(), scopes: 'api' } });

    // Act & Assess
    expect(() => buildApp(app)).toThrow('Invalid context "scopes": must include refresh_token');
  });

  it('fails `cdk synth` with one line that names the key', () => {
    // Arrange: the CLI hands context to the app as CDK_CONTEXT_JSON.
    const outdir = mkdtempSync(join(tmpdir(), 'token-broker-context-'));

    // Act
    const run = spawnSync(process.execPath, [join(repoRoot, 'infra', 'app.ts')], {
      cwd: repoRoot,
      env: {
        ...process.env,
        CDK_OUTDIR: outdir,
        CDK_CONTEXT_JSON: JSON.stringify({ allowedOrigins: 'https://app.example.com/' }),
      },
      encoding: 'utf8',
    });

    // Assess
    expect(run.status).toBe(1);
    expect(run.stderr.trim()).toBe(
      'Invalid context "allowedOrigins": holds "https://app.example.com/"; write origins as https://app.example.com',
    );
  });
});
