import { describe, expect, it } from 'vitest';
import {
  type CloudFormationTemplate,
  type DeployedFunction,
  LOCAL_OVERRIDES,
  type LocalOverride,
  resolveEnvironment,
} from '../../../local/bundle-runtime.ts';

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
