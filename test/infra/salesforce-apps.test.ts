/**
 * `salesforceApps` and `loginHosts` in the synthesized template: each function that reads
 * client credentials may read exactly the apps' secrets (one per app, the default app's
 * being the single-app secret), the functions learn the apps and the allow-list from
 * their environment in the shape `loadConfig` reads, and bad values fail `cdk synth`.
 */
import type { CfnElement } from 'aws-cdk-lib';
import { App } from 'aws-cdk-lib';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../functions/broker/config.ts';
import { buildApp } from '../../infra/app.ts';
import type { TokenBrokerStack } from '../../infra/token-broker-stack.ts';
import {
  cdkJsonContext,
  resourcesOfType,
  SKIP_BUNDLING,
  type Synthesized,
  synthBroker,
} from './synth.ts';

const SANDBOX_SECRET_ARN =
  'arn:aws:secretsmanager:eu-west-1:111111111111:secret:sf/sandbox-app-XyZ789';

type Statement = { Sid?: string; Action: unknown; Resource: unknown };

function statementsByRoute(synth: Synthesized): Record<string, Statement[]> {
  const stack = synth.stack as TokenBrokerStack;
  const policies = Object.values(resourcesOfType(synth.template, 'AWS::IAM::Policy'));
  const result: Record<string, Statement[]> = {};
  for (const [route, fn] of Object.entries(stack.broker.functions)) {
    const roleId = stack.getLogicalId(fn.role.node.defaultChild as CfnElement);
    const policy = policies.find(
      (p) => JSON.stringify(p.Properties.Roles) === JSON.stringify([{ Ref: roleId }]),
    );
    const document = policy?.Properties.PolicyDocument as { Statement: Statement[] } | undefined;
    result[route] = document?.Statement ?? [];
  }
  return result;
}

function environmentOf(synth: Synthesized, route: string): Record<string, unknown> {
  const stack = synth.stack as TokenBrokerStack;
  const fn = stack.broker.functions[route as 'login'];
  const id = stack.getLogicalId(fn.function.node.defaultChild as CfnElement);
  const resource = resourcesOfType(synth.template, 'AWS::Lambda::Function')[id];
  const environment = resource?.Properties.Environment as
    | { Variables: Record<string, unknown> }
    | undefined;
  return environment?.Variables ?? {};
}

const APPS = [
  { name: 'production' },
  {
    name: 'eu-sandbox',
    secret_arn: SANDBOX_SECRET_ARN,
    login_url: 'https://test.salesforce.com',
    scopes: 'api refresh_token web',
  },
  { name: 'partners', login_url: 'https://partners.my.salesforce.com' },
];

describe('Setting: salesforceApps', () => {
  let synth: Synthesized;
  let single: Synthesized;

  beforeAll(() => {
    synth = synthBroker({
      ...SKIP_BUNDLING,
      salesforceApps: APPS,
      loginHosts: ['login.salesforce.com', '*.my.site.com'],
    });
    single = synthBroker({ ...SKIP_BUNDLING });
  });

  it('lets each function that reads credentials read exactly the apps’ secrets', () => {
    // Prepare
    const stack = synth.stack as TokenBrokerStack;
    const secretRefs = stack.broker.appSecrets.map((app) => stack.resolve(app.secret.secretArn));

    // Act
    const statements = statementsByRoute(synth);

    // Assert: three secrets, the default app's being the single-app ClientSecret
    expect(stack.broker.appSecrets.map((app) => app.name)).toEqual([
      'production',
      'eu-sandbox',
      'partners',
    ]);
    expect(stack.resolve(stack.broker.clientSecret.secretArn)).toEqual(secretRefs[0]);
    expect(secretRefs).toContain(SANDBOX_SECRET_ARN);
    expect(
      Object.keys(resourcesOfType(synth.template, 'AWS::SecretsManager::Secret')),
    ).toHaveLength(2);
    for (const route of ['refresh', 'login', 'callback']) {
      const grant = statements[route]?.find((s) => s.Sid === 'ClientCredentials');
      expect(grant?.Action, route).toBe('secretsmanager:GetSecretValue');
      // (the policy lists its resources sorted)
      expect(grant?.Resource, route).toHaveLength(secretRefs.length);
      expect(grant?.Resource, route).toEqual(expect.arrayContaining(secretRefs));
    }
    for (const route of ['logout', 'session', 'token']) {
      expect(
        statements[route]?.map((s) => s.Sid),
        route,
      ).not.toContain('ClientCredentials');
    }
  });

  it('writes the apps and the allow-list in the shape the functions read', () => {
    // Act
    const variables = environmentOf(synth, 'login');
    const apps = JSON.parse(
      JSON.stringify(synth.stack.resolve(variables.SALESFORCE_APPS)).replace(
        /\{"Ref":"(\w+)"\}/g,
        '"arn:aws:secretsmanager:eu-west-1:111111111111:secret:$1-AbC123"',
      ),
    );

    // Assert
    expect(variables.LOGIN_HOSTS).toBe('login.salesforce.com,*.my.site.com');
    expect(variables.SALESFORCE_LOGIN_URL).toBe('https://login.salesforce.com');
    expect(typeof apps === 'string' || typeof apps === 'object').toBe(true);
    expect(JSON.stringify(apps)).toContain('"name\\":\\"eu-sandbox\\"');
    expect(JSON.stringify(apps)).toContain(SANDBOX_SECRET_ARN);
    expect(JSON.stringify(apps)).toContain('https://partners.my.salesforce.com');
  });

  it('keeps the single-app environment: no apps list, the default allow-list', () => {
    // Act
    const variables = environmentOf(single, 'refresh');
    const statements = statementsByRoute(single);

    // Assert
    expect(variables.SALESFORCE_APPS).toBe('');
    expect(variables.LOGIN_HOSTS).toBe(
      'login.salesforce.com,test.salesforce.com,*.my.salesforce.com,*.sandbox.my.salesforce.com',
    );
    const grant = statements.refresh?.find((s) => s.Sid === 'ClientCredentials');
    // One resource, as the template had it before several apps existed.
    expect(grant?.Resource).toEqual(
      (single.stack as TokenBrokerStack).resolve(
        (single.stack as TokenBrokerStack).broker.clientSecret.secretArn,
      ),
    );
  });

  it.each([
    [{ salesforceApps: [{ name: 'Prod' }] }, /salesforceApps/],
    [{ salesforceApps: [{ name: 'a' }, { name: 'a' }] }, /listed twice/],
    [{ salesforceApps: [{ name: 'a', scopes: 'api' }] }, /refresh_token/],
    [{ salesforceApps: [{ name: 'a', login_url: 'http://login.salesforce.com' }] }, /https/],
    [{ salesforceApps: [{ name: 'a', secret: 'x' }] }, /unknown member/],
    [{ salesforceApps: '{' }, /JSON array/],
    [
      {
        existingClientSecretArn: SANDBOX_SECRET_ARN,
        salesforceApps: [{ name: 'a', secret_arn: SANDBOX_SECRET_ARN.replace('XyZ789', 'Other1') }],
      },
      /must not differ/,
    ],
    [{ loginHosts: ['https://login.salesforce.com'] }, /loginHosts/],
    [{ loginHosts: ['*.com'] }, /loginHosts/],
  ])('refuses %j at synth', (context, message) => {
    // Act + Assert
    expect(() =>
      buildApp(new App({ context: { ...cdkJsonContext(), ...SKIP_BUNDLING, ...context } })),
    ).toThrow(message);
  });
});

describe('Function: loadConfig with SALESFORCE_APPS', () => {
  const base = {
    TABLE_NAME: 't',
    KMS_KEY_ID: 'k',
    CLIENT_SECRET_ID: 'secret-a',
    SALESFORCE_LOGIN_URL: 'https://login.salesforce.com',
  };

  it('reads the single app without the variable, and the list with it', () => {
    // Act
    const single = loadConfig(base);
    const several = loadConfig({
      ...base,
      SALESFORCE_APPS: JSON.stringify([
        {
          name: 'production',
          secret_id: 'secret-a',
          login_url: 'https://login.salesforce.com',
          scopes: 'api refresh_token',
        },
        {
          name: 'sandbox',
          secret_id: 'secret-b',
          login_url: 'https://test.salesforce.com',
          scopes: 'api refresh_token',
        },
      ]),
    });

    // Assert
    expect(single.salesforceApps).toEqual([
      {
        name: 'default',
        secretId: 'secret-a',
        loginUrl: 'https://login.salesforce.com',
        scopes: 'api refresh_token',
      },
    ]);
    expect(several.salesforceApps.map((app) => app.name)).toEqual(['production', 'sandbox']);
  });

  it('refuses a list whose first app is not the one of the single-app variables', () => {
    // Act + Assert
    expect(() =>
      loadConfig({
        ...base,
        SALESFORCE_APPS: JSON.stringify([
          {
            name: 'production',
            secret_id: 'secret-other',
            login_url: 'https://login.salesforce.com',
            scopes: 'api refresh_token',
          },
        ]),
      }),
    ).toThrow(/SALESFORCE_APPS/);
  });
});
