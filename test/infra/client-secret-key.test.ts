/**
 * `existingClientSecretKeyArn`: an existing client secret encrypted with a customer-managed
 * KMS key. The functions that read the secret get `kms:Decrypt` on that key, only through
 * Secrets Manager and only for that secret; nothing changes without the setting.
 */
import type { CfnElement } from 'aws-cdk-lib';
import { App } from 'aws-cdk-lib';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../infra/app.ts';
import { ContextError } from '../../infra/context.ts';
import type { TokenBrokerStack } from '../../infra/token-broker-stack.ts';
import {
  cdkJsonContext,
  resourcesOfType,
  SKIP_BUNDLING,
  type Synthesized,
  synthBroker,
} from './synth.ts';

const SECRET_ARN = 'arn:aws:secretsmanager:eu-west-1:111111111111:secret:sf/broker-client-AbC123';
const KEY_ARN = 'arn:aws:kms:eu-west-1:222222222222:key/1234abcd-12ab-34cd-56ef-1234567890ab';

type Statement = { Sid?: string; Action: unknown; Resource: unknown; Condition?: unknown };

/** The statements of each broker function's policy, by route. */
function statementsByRoute(synth: Synthesized): Record<string, Statement[]> {
  const stack = synth.stack as TokenBrokerStack;
  const policies = Object.values(resourcesOfType(synth.template, 'AWS::IAM::Policy'));
  const result: Record<string, Statement[]> = {};
  for (const [route, fn] of Object.entries(stack.broker.functions)) {
    const roleId = stack.getLogicalId(fn.role.node.defaultChild as CfnElement);
    const policy = policies.find(
      (p) => JSON.stringify(p.Properties.Roles) === JSON.stringify([{ Ref: roleId }]),
    );
    const document = policy?.Properties.PolicyDocument as { Statement: Statement[] };
    result[route] = document.Statement;
  }
  return result;
}

const synthFails = (context: Record<string, unknown>) => () =>
  buildApp(new App({ context: { ...cdkJsonContext(), ...SKIP_BUNDLING, ...context } }));

describe('Setting: existingClientSecretKeyArn', () => {
  let withKey: Synthesized;
  let withoutKey: Synthesized;

  beforeAll(() => {
    withKey = synthBroker({
      ...SKIP_BUNDLING,
      existingClientSecretArn: SECRET_ARN,
      existingClientSecretKeyArn: KEY_ARN,
    });
    withoutKey = synthBroker({ ...SKIP_BUNDLING, existingClientSecretArn: SECRET_ARN });
  });

  it('lets each function that reads the secret decrypt it through Secrets Manager only', () => {
    // Act
    const statements = statementsByRoute(withKey);

    // Assess
    const expected = {
      Sid: 'ClientCredentialsKey',
      Effect: 'Allow',
      Action: 'kms:Decrypt',
      Resource: KEY_ARN,
      Condition: {
        StringEquals: {
          'kms:ViaService': {
            'Fn::Join': ['', ['secretsmanager.', { Ref: 'AWS::Region' }, '.amazonaws.com']],
          },
          'kms:EncryptionContext:SecretARN': SECRET_ARN,
        },
      },
    };
    for (const route of ['refresh', 'login', 'callback']) {
      expect(statements[route], route).toContainEqual(expected);
    }
    // Logout revokes with the token alone and never reads the secret.
    expect(statements.logout?.map((s) => s.Sid)).not.toContain('ClientCredentialsKey');
  });

  it('grants nothing on any key for the secret without the setting', () => {
    // Act
    const statements = statementsByRoute(withoutKey);

    // Assess
    for (const [route, list] of Object.entries(statements)) {
      expect(
        list.map((s) => s.Sid),
        route,
      ).not.toContain('ClientCredentialsKey');
      for (const statement of list)
        expect(JSON.stringify(statement)).not.toContain('kms:ViaService');
    }
  });

  it('passes cdk-nag', () => {
    expect(withKey.violations).toEqual([]);
  });

  it('fails synth naming the setting when the value is not a KMS key ARN', () => {
    for (const bad of [
      'arn:aws:kms:eu-west-1:222222222222:alias/broker-secrets',
      '1234abcd-12ab-34cd-56ef-1234567890ab',
      'arn:aws:secretsmanager:eu-west-1:222222222222:key/1234abcd-12ab-34cd-56ef-1234567890ab',
    ]) {
      expect(
        synthFails({ existingClientSecretArn: SECRET_ARN, existingClientSecretKeyArn: bad }),
        bad,
      ).toThrow(
        expect.objectContaining({
          constructor: ContextError,
          key: 'existingClientSecretKeyArn',
          message: expect.stringContaining('must be a KMS key ARN'),
        }),
      );
    }
  });

  it('fails synth when the key is in another region than the secret', () => {
    const otherRegion = KEY_ARN.replace('eu-west-1', 'us-east-1');

    expect(
      synthFails({ existingClientSecretArn: SECRET_ARN, existingClientSecretKeyArn: otherRegion }),
    ).toThrow(/"existingClientSecretKeyArn": is in us-east-1 but the secret is in eu-west-1/);
  });

  it('fails synth when set without existingClientSecretArn', () => {
    expect(synthFails({ existingClientSecretKeyArn: KEY_ARN })).toThrow(
      expect.objectContaining({
        key: 'existingClientSecretKeyArn',
        message: expect.stringContaining('set existingClientSecretArn too'),
      }),
    );
  });

  it('is unset by the empty string cdk.json ships', () => {
    expect(cdkJsonContext().existingClientSecretKeyArn).toBe('');
    expect(synthFails({ existingClientSecretKeyArn: '' })).not.toThrow();
  });
});
