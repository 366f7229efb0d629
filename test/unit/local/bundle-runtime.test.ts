import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BundleFunction,
  type BundleFunctionOptions,
  type CloudFormationTemplate,
  type DeployedFunction,
  FUNCTION_ERROR_RESULT,
  LOCAL_OVERRIDES,
  type LocalOverride,
  type LogLine,
  resolveEnvironment,
} from '../../../local/bundle-runtime.ts';
import { httpEvent } from '../../support/http-event.ts';

const template: CloudFormationTemplate = {
  Resources: {
    Table: { Type: 'AWS::DynamoDB::Table' },
    Key: { Type: 'AWS::KMS::Key' },
    Secret: { Type: 'AWS::SecretsManager::Secret' },
    Api: { Type: 'AWS::ApiGatewayV2::Api' },
    Topic: { Type: 'AWS::SNS::Topic' },
  },
};

const local = {
  tableName: 'local-table',
  keyId: 'local-key',
  secretId: 'local-secret',
  apiUrl: 'http://127.0.0.1:4000',
};

const overrides = Object.fromEntries(
  LOCAL_OVERRIDES.map((name) => [name, `local-${name}`]),
) as Record<LocalOverride, string>;

function fn(environment: DeployedFunction['environment']): DeployedFunction {
  return {
    logicalId: 'RefreshFunctionABC',
    name: 'RefreshFunction',
    routeKey: 'ANY /refresh',
    authorizationType: 'NONE',
    assetDir: '/assets/refresh',
    handler: 'index.handler',
    runtime: 'nodejs24.x',
    timeoutSeconds: 12,
    memorySizeMb: 512,
    environment,
  };
}

describe('resolveEnvironment', () => {
  it('replaces each reference by its local equivalent and keeps plain values as they are', () => {
    const env = resolveEnvironment(
      fn({
        TABLE_NAME: { Ref: 'Table' },
        KMS_KEY_ID: { 'Fn::GetAtt': ['Key', 'Arn'] },
        CLIENT_SECRET_ID: { Ref: 'Secret' },
        CALLBACK_URL: {
          'Fn::Join': [
            '',
            [
              'https://',
              { Ref: 'Api' },
              '.execute-api.',
              { Ref: 'AWS::Region' },
              '.',
              { Ref: 'AWS::URLSuffix' },
              '/callback',
            ],
          ],
        },
        LEASE_MS: '12000',
        ALLOWED_ORIGINS: '',
        SALESFORCE_LOGIN_URL: 'https://login.salesforce.com',
      }),
      template,
      local,
      overrides,
    );

    expect(env).toMatchObject({
      TABLE_NAME: 'local-table',
      KMS_KEY_ID: 'local-key',
      CLIENT_SECRET_ID: 'local-secret',
      CALLBACK_URL: 'http://127.0.0.1:4000/callback',
      LEASE_MS: '12000',
      ALLOWED_ORIGINS: '',
      SALESFORCE_LOGIN_URL: 'local-SALESFORCE_LOGIN_URL',
      AWS_ENDPOINT_URL_DYNAMODB: 'local-AWS_ENDPOINT_URL_DYNAMODB',
      AWS_LAMBDA_FUNCTION_NAME: 'RefreshFunction',
      _HANDLER: 'index.handler',
    });
  });

  it('fails, naming the variable, on a reference it has no local equivalent for', () => {
    expect(() =>
      resolveEnvironment(fn({ ALARM_TOPIC: { Ref: 'Topic' } }), template, local, overrides),
    ).toThrow(/^ALARM_TOPIC: no local equivalent/);
  });

  it('fails when a local value for an overridden variable is missing', () => {
    const { AWS_REGION: _region, ...incomplete } = overrides;
    expect(() =>
      resolveEnvironment(fn({}), template, local, incomplete as Record<LocalOverride, string>),
    ).toThrow(/AWS_REGION/);
  });
});

/**
 * The runtime itself, on tiny bundles written here: module state per execution
 * environment, the function timeout, failures, captured output.
 */
describe('BundleFunction', () => {
  const FIXTURE = `
let invocations = 0;
export const handler = async (event, context) => {
  invocations += 1;
  console.log(JSON.stringify({ message: 'invoked', path: event.rawPath }));
  if (event.rawPath === '/hang') await new Promise(() => {});
  if (event.rawPath === '/throw') throw new Error('boom');
  if (event.rawPath === '/wait') await new Promise((resolve) => setTimeout(resolve, 200));
  return {
    statusCode: 200,
    body: JSON.stringify({
      invocations,
      remaining: context.getRemainingTimeInMillis(),
      table: process.env.TABLE_NAME,
    }),
  };
};
`;
  let assetDir: string;

  beforeAll(() => {
    assetDir = mkdtempSync(join(tmpdir(), 'bundle-runtime-fixture-'));
    writeFileSync(join(assetDir, 'index.mjs'), FIXTURE);
  });
  afterAll(() => {
    rmSync(assetDir, { recursive: true, force: true });
  });

  function fixture(options: BundleFunctionOptions = {}, timeoutSeconds = 1) {
    const logs: LogLine[] = [];
    const bundle = new BundleFunction(
      { ...fn({}), assetDir, timeoutSeconds },
      { TABLE_NAME: 'from-env' },
      { ...options, onLog: (line) => logs.push(line) },
    );
    return { bundle, logs };
  }

  it('runs concurrent invocations in fresh workers and a later one in a warm worker', async () => {
    const { bundle } = fixture({}, 5);
    try {
      const concurrent = await Promise.all(
        [1, 2, 3].map(() => bundle.invoke(httpEvent({ method: 'GET', path: '/wait' }))),
      );
      const warm = await bundle.invoke(httpEvent({ method: 'GET', path: '/' }));

      const counts = concurrent.map(({ result }) => JSON.parse(result.body ?? '{}').invocations);
      expect(counts).toEqual([1, 1, 1]);
      expect(new Set(concurrent.map(({ invocation }) => invocation.workerId)).size).toBe(3);
      expect(warm.invocation.coldStart).toBe(false);
      expect(JSON.parse(warm.result.body ?? '{}')).toMatchObject({
        invocations: 2,
        table: 'from-env',
      });
      expect(JSON.parse(warm.result.body ?? '{}').remaining).toBeLessThanOrEqual(5000);
    } finally {
      await bundle.close();
    }
  });

  it('kills an invocation at the function timeout and answers like API Gateway', async () => {
    const { bundle } = fixture();
    try {
      const hung = await bundle.invoke(httpEvent({ method: 'GET', path: '/hang' }));
      const next = await bundle.invoke(httpEvent({ method: 'GET', path: '/' }));

      expect(hung.result).toEqual(FUNCTION_ERROR_RESULT);
      expect(hung.invocation).toMatchObject({ timedOut: true, failed: true, statusCode: 500 });
      // The killed environment is gone: the next invocation starts a new one.
      expect(next.invocation.coldStart).toBe(true);
      expect(JSON.parse(next.result.body ?? '{}').invocations).toBe(1);
    } finally {
      await bundle.close();
    }
  });

  it('answers 500 when the handler throws, and captures what the function wrote', async () => {
    const { bundle, logs } = fixture();
    try {
      const thrown = await bundle.invoke(httpEvent({ method: 'GET', path: '/throw' }));

      expect(thrown.result).toEqual(FUNCTION_ERROR_RESULT);
      expect(thrown.invocation).toMatchObject({ timedOut: false, failed: true });
      expect(thrown.invocation.error).toContain('boom');
      expect(logs.map((line) => line.line)).toContain('{"message":"invoked","path":"/throw"}');
    } finally {
      await bundle.close();
    }
  });
});
