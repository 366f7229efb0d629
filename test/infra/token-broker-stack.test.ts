import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App, type CfnElement, Validations } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { Role, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import type { IConstruct } from 'constructs';
import { beforeAll, describe, expect, it } from 'vitest';
import { BROKER_METRIC_NAMES, SERVICE_ROUTE_KEYS } from '../../functions/shared/constants.ts';
import { ESM_REQUIRE_BANNER } from '../../infra/bundle-options.ts';
import { KEY_ADMIN_ACTIONS } from '../../infra/token-broker.ts';
import { TokenBrokerStack } from '../../infra/token-broker-stack.ts';
import { dummyFunctionEnv } from './function-env.ts';
import { resourcesOfType, SKIP_BUNDLING, type Synthesized, synthBroker } from './synth.ts';

const ROUTES = ['refresh', 'login', 'callback', 'logout', 'session', 'token'] as const;
type Route = (typeof ROUTES)[number] | 'service';

const PURPOSE_CONDITION = {
  StringEquals: { 'kms:EncryptionContext:purpose': 'salesforce-token' },
  'ForAllValues:StringEquals': { 'kms:EncryptionContextKeys': ['purpose', 'session'] },
};

describe('Stack: TokenBroker (cdk.json defaults)', () => {
  let synth: Synthesized;
  let stack: TokenBrokerStack;
  const id = (construct: IConstruct) =>
    stack.getLogicalId(construct.node.defaultChild as CfnElement);
  const fnId = (route: Route | 'notFound') =>
    id(
      route === 'notFound'
        ? stack.broker.notFoundFunction.function
        : stack.broker.functions[route].function,
    );

  beforeAll(() => {
    synth = synthBroker({
      allowedOrigins: 'https://app.example.com,https://admin.example.com',
      alarmEmail: 'ops@example.com',
    });
    stack = synth.stack as TokenBrokerStack;
    // Bundles every function with esbuild (eight of them), which takes a while under load.
  }, 120_000);

  describe('cdk-nag AwsSolutions', () => {
    it('leaves no unacknowledged finding', () => {
      expect(synth.violations).toEqual([]);
    });

    it('gives every acknowledgement a specific reason', () => {
      const acknowledgements = collectAcknowledgements(synth.app);
      expect(acknowledgements.map((a) => a.id).sort()).toEqual([
        'AwsSolutions::AwsSolutions-APIG4',
        'AwsSolutions::AwsSolutions-APIG4',
        'AwsSolutions::AwsSolutions-APIG4',
        'AwsSolutions::AwsSolutions-APIG4',
        'AwsSolutions::AwsSolutions-APIG4',
        'AwsSolutions::AwsSolutions-APIG4',
        'AwsSolutions::AwsSolutions-APIG4',
        'AwsSolutions::AwsSolutions-IAM5[Resource::*]',
        'AwsSolutions::AwsSolutions-SMG4',
        'AwsSolutions::AwsSolutions-SQS3',
      ]);
      const reasons = acknowledgements.map((a) => a.reason);
      expect(new Set(reasons).size).toBe(reasons.length);
      for (const reason of reasons) expect(reason.length).toBeGreaterThan(80);
    });
  });

  describe('HTTP API', () => {
    it('routes every method of each path to its own function, and unknown paths to the 404 function', () => {
      const routes = resourcesOfType(synth.template, 'AWS::ApiGatewayV2::Route');
      const integrations = resourcesOfType(synth.template, 'AWS::ApiGatewayV2::Integration');
      const targetOf = (routeKey: string) => {
        const route = Object.values(routes).find((r) => r.Properties.RouteKey === routeKey);
        const target = route?.Properties.Target as { 'Fn::Join': [string, unknown[]] };
        const ref = target['Fn::Join'][1][1] as { Ref: string };
        return integrations[ref.Ref]?.Properties;
      };
      expect(
        Object.values(routes)
          .map((r) => r.Properties.RouteKey)
          .sort(),
      ).toEqual(
        [
          '$default',
          'ANY /callback',
          'ANY /login',
          'ANY /logout',
          'ANY /refresh',
          'ANY /session',
          'ANY /token',
          ...SERVICE_ROUTE_KEYS,
        ].sort(),
      );
      for (const route of ROUTES) {
        expect(targetOf(`ANY /${route}`)).toMatchObject({
          IntegrationType: 'AWS_PROXY',
          PayloadFormatVersion: '2.0',
          TimeoutInMillis: 29_000,
          IntegrationUri: { 'Fn::GetAtt': [fnId(route), 'Arn'] },
        });
      }
      for (const routeKey of SERVICE_ROUTE_KEYS) {
        expect(targetOf(routeKey), routeKey).toMatchObject({
          IntegrationType: 'AWS_PROXY',
          PayloadFormatVersion: '2.0',
          TimeoutInMillis: 29_000,
          IntegrationUri: { 'Fn::GetAtt': [fnId('service'), 'Arn'] },
        });
      }
      expect(targetOf('$default')).toMatchObject({
        IntegrationUri: { 'Fn::GetAtt': [fnId('notFound'), 'Arn'] },
      });
      // AWS_IAM (SigV4) on exactly the service API; the others authenticate themselves.
      for (const route of Object.values(routes)) {
        const routeKey = String(route.Properties.RouteKey);
        const iam = (SERVICE_ROUTE_KEYS as readonly string[]).includes(routeKey);
        expect(route.Properties.AuthorizationType ?? 'NONE', routeKey).toBe(
          iam ? 'AWS_IAM' : 'NONE',
        );
      }
    });

    it('grants execute-api:Invoke on exactly the service routes with grantServiceAccess', () => {
      // Prepare: a backend job's role in the same stack
      const app = new App({ context: SKIP_BUNDLING });
      const jobStack = new TokenBrokerStack(app, 'JobStack', {
        env: { account: '111111111111', region: 'eu-west-1' },
        broker: { retainData: false },
      });
      const job = new Role(jobStack, 'NightlySync', {
        assumedBy: new ServicePrincipal('lambda.amazonaws.com'),
      });

      // Act
      jobStack.broker.grantServiceAccess(job);

      // Assess
      const template = Template.fromStack(jobStack);
      const apiRef = {
        Ref: jobStack.getLogicalId(jobStack.broker.api.node.defaultChild as CfnElement),
      };
      const arn = (methodPath: string) => ({
        'Fn::Join': [
          '',
          [
            'arn:',
            { Ref: 'AWS::Partition' },
            ':execute-api:eu-west-1:111111111111:',
            apiRef,
            `/$default/${methodPath}`,
          ],
        ],
      });
      template.hasResourceProperties('AWS::IAM::Policy', {
        Roles: [{ Ref: jobStack.getLogicalId(job.node.defaultChild as CfnElement) }],
        PolicyDocument: {
          Statement: [
            {
              Effect: 'Allow',
              Action: 'execute-api:Invoke',
              Resource: [
                arn('POST/connections/*/token'),
                arn('GET/connections/*'),
                arn('DELETE/connections/*'),
                arn('GET/connections'),
                arn('DELETE/connections'),
              ],
            },
          ],
        },
      });
      expect(jobStack.broker.serviceRouteArns()).toHaveLength(SERVICE_ROUTE_KEYS.length);
    });

    it('throttles each route, and everything else by the stage default', () => {
      synth.template.hasResourceProperties('AWS::ApiGatewayV2::Stage', {
        StageName: '$default',
        AutoDeploy: true,
        DefaultRouteSettings: { ThrottlingRateLimit: 5, ThrottlingBurstLimit: 10 },
        RouteSettings: {
          'ANY /refresh': { ThrottlingRateLimit: 250, ThrottlingBurstLimit: 500 },
          'ANY /login': { ThrottlingRateLimit: 50, ThrottlingBurstLimit: 100 },
          'ANY /callback': { ThrottlingRateLimit: 50, ThrottlingBurstLimit: 100 },
          'ANY /logout': { ThrottlingRateLimit: 40, ThrottlingBurstLimit: 75 },
          'ANY /session': { ThrottlingRateLimit: 25, ThrottlingBurstLimit: 50 },
          'ANY /token': { ThrottlingRateLimit: 40, ThrottlingBurstLimit: 80 },
          ...Object.fromEntries(
            SERVICE_ROUTE_KEYS.map((key) => [
              key,
              { ThrottlingRateLimit: 10, ThrottlingBurstLimit: 15 },
            ]),
          ),
        },
      });
      // Route settings name routes, so the stage must be deployed after them.
      const [stage] = Object.values(resourcesOfType(synth.template, 'AWS::ApiGatewayV2::Stage'));
      const routeIds = Object.keys(resourcesOfType(synth.template, 'AWS::ApiGatewayV2::Route'));
      expect(stage?.DependsOn).toEqual(expect.arrayContaining(routeIds));
    });

    it('writes JSON access logs without query strings, cookies, headers or authorizer data', () => {
      const [stage] = Object.values(resourcesOfType(synth.template, 'AWS::ApiGatewayV2::Stage'));
      const settings = stage?.Properties.AccessLogSettings as {
        Format: string;
        DestinationArn: unknown;
      };
      const format = JSON.parse(settings.Format) as Record<string, string>;
      expect(format).toMatchObject({
        requestId: '$context.requestId',
        ip: '$context.identity.sourceIp',
        routeKey: '$context.routeKey',
        path: '$context.path',
        status: '$context.status',
        integrationError: '$context.integrationErrorMessage',
      });
      for (const variable of Object.values(format)) {
        expect(variable).not.toMatch(/querystring|cookie|header|authorizer|authorization|body/i);
      }
      expect(settings.DestinationArn).toEqual({
        'Fn::GetAtt': [id(stack.broker.node.findChild('AccessLogs')), 'Arn'],
      });
      synth.template.hasResourceProperties('AWS::Logs::LogGroup', { RetentionInDays: 90 });
    });

    it('configures no API-wide CORS: only /refresh and /logout answer CORS, in the function', () => {
      synth.template.hasResourceProperties('AWS::ApiGatewayV2::Api', {
        ProtocolType: 'HTTP',
        CorsConfiguration: Match.absent(),
        DisableExecuteApiEndpoint: false,
      });
      for (const route of ROUTES) {
        const env = environmentOf(route);
        expect(env.ALLOWED_ORIGINS).toBe('https://app.example.com,https://admin.example.com');
      }
    });
  });

  describe('functions', () => {
    const expected: Record<Route | 'notFound', { memory: number; timeout: number }> = {
      refresh: { memory: 512, timeout: 12 },
      login: { memory: 512, timeout: 6 },
      callback: { memory: 512, timeout: 12 },
      logout: { memory: 512, timeout: 12 },
      session: { memory: 512, timeout: 12 },
      token: { memory: 512, timeout: 12 },
      service: { memory: 512, timeout: 12 },
      notFound: { memory: 128, timeout: 3 },
    };

    it('runs Node 24 on arm64 with the measured memory and the budget timeouts', () => {
      for (const [route, { memory, timeout }] of Object.entries(expected)) {
        const fn = synth.template.toJSON().Resources[fnId(route as Route | 'notFound')];
        expect(fn.Properties).toMatchObject({
          Runtime: 'nodejs24.x',
          Architectures: ['arm64'],
          Handler: 'index.handler',
          MemorySize: memory,
          Timeout: timeout,
          LoggingConfig: { LogGroup: expect.anything() },
        });
        expect(fn.Properties.Environment.Variables.NODE_OPTIONS).toBe('--enable-source-maps');
      }
    });

    it('derives the lease, upstream and waiter budgets from the function timeout', () => {
      const env = environmentOf('refresh');
      expect(env).toMatchObject({
        LEASE_MS: '12000',
        UPSTREAM_TIMEOUT_MS: '8000',
        WAIT_BUDGET_MS: '10000',
        INVOCATION_DEADLINE_MS: '11000',
        REUSE_WINDOW_SECONDS: '5',
        SESSION_ABSOLUTE_TTL_SECONDS: '2592000',
        SESSION_IDLE_TTL_SECONDS: '604800',
        SECRET_CACHE_TTL_SECONDS: '300',
        ENDED_CONNECTION_RETENTION_DAYS: '30',
        SALESFORCE_LOGIN_URL: 'https://login.salesforce.com',
        SALESFORCE_SCOPES: 'api refresh_token',
        RETURN_TO_PREFIXES: '/',
        POWERTOOLS_SERVICE_NAME: 'TokenBroker',
        POWERTOOLS_METRICS_NAMESPACE: 'TokenBroker',
        LOG_LEVEL: 'INFO',
      });
      const timeoutMs = expected.refresh.timeout * 1000;
      expect(Number(env.LEASE_MS)).toBeGreaterThanOrEqual(timeoutMs);
      expect(Number(env.UPSTREAM_TIMEOUT_MS)).toBeLessThan(Number(env.LEASE_MS));
      expect(Number(env.WAIT_BUDGET_MS)).toBeLessThan(timeoutMs);
      expect(Number(env.INVOCATION_DEADLINE_MS)).toBeLessThan(timeoutMs);
      expect(timeoutMs).toBeLessThan(29_000);
      expect(env.TABLE_NAME).toEqual({ Ref: id(stack.broker.table) });
      expect(env.KMS_KEY_ID).toEqual({ 'Fn::GetAtt': [id(stack.broker.key), 'Arn'] });
      expect(env.CLIENT_SECRET_ID).toEqual({ Ref: id(stack.broker.clientSecret) });
      expect(JSON.stringify(env.CALLBACK_URL)).toMatch(/execute-api.*\/callback"/);
    });

    it('bundles the AWS SDK into one minified ESM file that loads without node_modules', () => {
      const bundles = readdirSync(synth.outdir)
        .filter((name) => name.startsWith('asset.'))
        .map((asset) => join(synth.outdir, asset))
        .filter((dir) => readdirSync(dir).includes('index.mjs'));
      // The seven routes, the 404 function, the event publisher and the sweep.
      expect(bundles).toHaveLength(10);
      for (const dir of bundles) {
        expect(readdirSync(dir).sort()).toEqual(['index.mjs', 'index.mjs.map']);
        const code = readFileSync(join(dir, 'index.mjs'), 'utf8');
        expect(code.startsWith(ESM_REQUIRE_BANNER)).toBe(true);
        // Minified: unminified, the SDK alone spans thousands of lines.
        expect(code.split('\n').length).toBeLessThan(200);
        // Outside the repository no node_modules can be found: the bundle must be whole.
        const alone = mkdtempSync(join(tmpdir(), 'token-broker-bundle-'));
        copyFileSync(join(dir, 'index.mjs'), join(alone, 'index.mjs'));
        const run = spawnSync(
          process.execPath,
          [
            '--input-type=module',
            '-e',
            'const m = await import("./index.mjs"); process.stdout.write(typeof m.handler);',
          ],
          { cwd: alone, env: dummyFunctionEnv(), encoding: 'utf8' },
        );
        expect(run.stderr).toBe('');
        expect(run.stdout).toBe('function');
      }
    });
  });

  describe('IAM', () => {
    const logsStatement = (route: Route | 'notFound' | 'sweep') => ({
      Sid: 'WriteOwnLogs',
      Effect: 'Allow',
      Action: ['logs:CreateLogStream', 'logs:PutLogEvents'],
      Resource: {
        'Fn::GetAtt': [
          id(
            route === 'notFound'
              ? stack.broker.notFoundFunction.logGroup
              : route === 'sweep'
                ? stack.broker.sweepFunction.logGroup
                : stack.broker.functions[route].logGroup,
          ),
          'Arn',
        ],
      },
    });
    const table = () => ({ 'Fn::GetAtt': [id(stack.broker.table), 'Arn'] });
    const key = () => ({ 'Fn::GetAtt': [id(stack.broker.key), 'Arn'] });
    const secret = () => ({ Ref: id(stack.broker.clientSecret) });
    const only = (prefix: string) => ({
      'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': [`${prefix}*`] },
    });
    const secretStatement = () => ({
      Sid: 'ClientCredentials',
      Effect: 'Allow',
      Action: 'secretsmanager:GetSecretValue',
      Resource: secret(),
    });

    it('lists every statement of every function role exactly', () => {
      const statements = {
        refresh: [
          logsStatement('refresh'),
          {
            Sid: 'SessionItems',
            Effect: 'Allow',
            Action: ['dynamodb:DeleteItem', 'dynamodb:GetItem', 'dynamodb:UpdateItem'],
            Resource: table(),
            Condition: only('session#'),
          },
          {
            Sid: 'ConnectionPointerItems',
            Effect: 'Allow',
            Action: 'dynamodb:UpdateItem',
            Resource: table(),
            Condition: only('connection#'),
          },
          {
            Sid: 'EndedSessionTombstones',
            Effect: 'Allow',
            Action: ['dynamodb:GetItem', 'dynamodb:PutItem'],
            Resource: table(),
            Condition: only('ended#'),
          },
          {
            Sid: 'UpstreamAlertItems',
            Effect: 'Allow',
            Action: 'dynamodb:PutItem',
            Resource: table(),
            Condition: only('alert#'),
          },
          {
            Sid: 'TokenEnvelope',
            Effect: 'Allow',
            Action: ['kms:Decrypt', 'kms:GenerateDataKey'],
            Resource: key(),
            Condition: PURPOSE_CONDITION,
          },
          secretStatement(),
        ],
        login: [
          logsStatement('login'),
          {
            Sid: 'LoginTransactionItems',
            Effect: 'Allow',
            Action: ['dynamodb:GetItem', 'dynamodb:PutItem'],
            Resource: table(),
            Condition: only('login#'),
          },
          secretStatement(),
        ],
        callback: [
          logsStatement('callback'),
          {
            Sid: 'LoginTransactionItems',
            Effect: 'Allow',
            Action: ['dynamodb:GetItem', 'dynamodb:UpdateItem'],
            Resource: table(),
            Condition: only('login#'),
          },
          {
            Sid: 'SessionItems',
            Effect: 'Allow',
            Action: [
              'dynamodb:DeleteItem',
              'dynamodb:GetItem',
              'dynamodb:PutItem',
              'dynamodb:UpdateItem',
            ],
            Resource: table(),
            Condition: only('session#'),
          },
          {
            Sid: 'ConnectionPointerItems',
            Effect: 'Allow',
            Action: [
              'dynamodb:DeleteItem',
              'dynamodb:GetItem',
              'dynamodb:PutItem',
              'dynamodb:UpdateItem',
            ],
            Resource: table(),
            Condition: only('connection#'),
          },
          {
            Sid: 'BrokerCodeItems',
            Effect: 'Allow',
            Action: ['dynamodb:GetItem', 'dynamodb:PutItem'],
            Resource: table(),
            Condition: only('code#'),
          },
          {
            Sid: 'EndedSessionTombstones',
            Effect: 'Allow',
            Action: 'dynamodb:PutItem',
            Resource: table(),
            Condition: only('ended#'),
          },
          {
            Sid: 'UpstreamAlertItems',
            Effect: 'Allow',
            Action: 'dynamodb:PutItem',
            Resource: table(),
            Condition: only('alert#'),
          },
          {
            Sid: 'TokenEnvelope',
            Effect: 'Allow',
            Action: ['kms:Decrypt', 'kms:GenerateDataKey'],
            Resource: key(),
            Condition: PURPOSE_CONDITION,
          },
          secretStatement(),
        ],
        logout: [
          logsStatement('logout'),
          {
            Sid: 'SessionItems',
            Effect: 'Allow',
            Action: ['dynamodb:DeleteItem', 'dynamodb:GetItem'],
            Resource: table(),
            Condition: only('session#'),
          },
          {
            Sid: 'ConnectionPointerItems',
            Effect: 'Allow',
            Action: 'dynamodb:UpdateItem',
            Resource: table(),
            Condition: only('connection#'),
          },
          {
            Sid: 'EndedSessionTombstones',
            Effect: 'Allow',
            Action: 'dynamodb:PutItem',
            Resource: table(),
            Condition: only('ended#'),
          },
          {
            Sid: 'TokenEnvelope',
            Effect: 'Allow',
            Action: 'kms:Decrypt',
            Resource: key(),
            Condition: PURPOSE_CONDITION,
          },
        ],
        session: [
          logsStatement('session'),
          {
            Sid: 'SessionItems',
            Effect: 'Allow',
            Action: 'dynamodb:GetItem',
            Resource: table(),
            Condition: only('session#'),
          },
        ],
        // No secret, no GenerateDataKey: a replayed or refused code ends its connection.
        token: [
          logsStatement('token'),
          {
            Sid: 'BrokerCodeItems',
            Effect: 'Allow',
            Action: ['dynamodb:GetItem', 'dynamodb:UpdateItem'],
            Resource: table(),
            Condition: only('code#'),
          },
          {
            Sid: 'SessionItems',
            Effect: 'Allow',
            Action: ['dynamodb:DeleteItem', 'dynamodb:GetItem'],
            Resource: table(),
            Condition: only('session#'),
          },
          {
            Sid: 'ConnectionPointerItems',
            Effect: 'Allow',
            Action: ['dynamodb:DeleteItem', 'dynamodb:UpdateItem'],
            Resource: table(),
            Condition: only('connection#'),
          },
          {
            Sid: 'EndedSessionTombstones',
            Effect: 'Allow',
            Action: 'dynamodb:PutItem',
            Resource: table(),
            Condition: only('ended#'),
          },
          {
            Sid: 'TokenEnvelope',
            Effect: 'Allow',
            Action: 'kms:Decrypt',
            Resource: key(),
            Condition: PURPOSE_CONDITION,
          },
        ],
        // Refresh by connection id, describe, list from the index, end one or many.
        service: [
          logsStatement('service'),
          {
            Sid: 'SessionItems',
            Effect: 'Allow',
            Action: ['dynamodb:DeleteItem', 'dynamodb:GetItem', 'dynamodb:UpdateItem'],
            Resource: table(),
            Condition: only('session#'),
          },
          {
            Sid: 'ConnectionPointerItems',
            Effect: 'Allow',
            Action: ['dynamodb:GetItem', 'dynamodb:UpdateItem'],
            Resource: table(),
            Condition: only('connection#'),
          },
          {
            Sid: 'EndedSessionTombstones',
            Effect: 'Allow',
            Action: 'dynamodb:PutItem',
            Resource: table(),
            Condition: only('ended#'),
          },
          {
            Sid: 'UpstreamAlertItems',
            Effect: 'Allow',
            Action: 'dynamodb:PutItem',
            Resource: table(),
            Condition: only('alert#'),
          },
          {
            Sid: 'ConnectionsByOrganization',
            Effect: 'Allow',
            Action: 'dynamodb:Query',
            Resource: {
              'Fn::Join': ['', [table(), '/index/connectionsByOrganization']],
            },
          },
          {
            Sid: 'TokenEnvelope',
            Effect: 'Allow',
            Action: ['kms:Decrypt', 'kms:GenerateDataKey'],
            Resource: key(),
            Condition: PURPOSE_CONDITION,
          },
          secretStatement(),
        ],
        notFound: [logsStatement('notFound')],
        // Keep-alive through the lease, expiry as the service API's DELETE, the sweep index.
        sweep: [
          logsStatement('sweep'),
          {
            Sid: 'SessionItems',
            Effect: 'Allow',
            Action: ['dynamodb:DeleteItem', 'dynamodb:GetItem', 'dynamodb:UpdateItem'],
            Resource: table(),
            Condition: only('session#'),
          },
          {
            Sid: 'ConnectionPointerItems',
            Effect: 'Allow',
            Action: 'dynamodb:UpdateItem',
            Resource: table(),
            Condition: only('connection#'),
          },
          {
            Sid: 'EndedSessionTombstones',
            Effect: 'Allow',
            Action: ['dynamodb:GetItem', 'dynamodb:PutItem'],
            Resource: table(),
            Condition: only('ended#'),
          },
          {
            Sid: 'SweepIndex',
            Effect: 'Allow',
            Action: 'dynamodb:Query',
            Resource: { 'Fn::Join': ['', [table(), '/index/sweepDue']] },
          },
          {
            Sid: 'TokenEnvelope',
            Effect: 'Allow',
            Action: ['kms:Decrypt', 'kms:GenerateDataKey'],
            Resource: key(),
            Condition: PURPOSE_CONDITION,
          },
          secretStatement(),
        ],
      };
      const policies = resourcesOfType(synth.template, 'AWS::IAM::Policy');
      // Each function's role, and the sweep schedule's (lambda:InvokeFunction on the sweep);
      // the publisher's own policy is checked in test/infra/publisher.test.ts.
      expect(Object.keys(policies)).toHaveLength(11);
      for (const [route, expectedStatements] of Object.entries(statements)) {
        const role =
          route === 'notFound'
            ? stack.broker.notFoundFunction.role
            : route === 'sweep'
              ? stack.broker.sweepFunction.role
              : stack.broker.functions[route as Route].role;
        const policy = Object.values(policies).find(
          (p) => JSON.stringify(p.Properties.Roles) === JSON.stringify([{ Ref: id(role) }]),
        );
        expect(policy?.Properties.PolicyDocument, route).toEqual({
          Version: '2012-10-17',
          Statement: expectedStatements,
        });
      }
    });

    it('uses no AWS managed policy, no inline role policy and no wildcard action anywhere', () => {
      for (const role of Object.values(resourcesOfType(synth.template, 'AWS::IAM::Role'))) {
        expect(role.Properties.ManagedPolicyArns).toBeUndefined();
        expect(role.Properties.Policies).toBeUndefined();
        const trust = role.Properties.AssumeRolePolicyDocument as {
          Statement: { Principal?: { Service?: string } }[];
        };
        const scheduler = trust.Statement[0]?.Principal?.Service === 'scheduler.amazonaws.com';
        expect(role.Properties.AssumeRolePolicyDocument).toEqual({
          Version: '2012-10-17',
          Statement: [
            {
              Effect: 'Allow',
              Action: 'sts:AssumeRole',
              // The sweep's schedule: EventBridge Scheduler of this account only.
              ...(scheduler
                ? {
                    Principal: { Service: 'scheduler.amazonaws.com' },
                    Condition: { StringEquals: { 'aws:SourceAccount': { Ref: 'AWS::AccountId' } } },
                  }
                : { Principal: { Service: 'lambda.amazonaws.com' } }),
            },
          ],
        });
      }
      const actions = collectActions(synth.template.toJSON());
      expect(actions.length).toBeGreaterThan(20);
      // The one wildcard: the dead-letter queue's policy denies every SQS action without TLS.
      const allowed = actions.filter((action) => action !== DENY_WITHOUT_TLS);
      for (const action of allowed) expect(action).not.toContain('*');
      expect(JSON.stringify(resourcesOfType(synth.template, 'AWS::SQS::QueuePolicy'))).toContain(
        '"Effect":"Deny"',
      );
    });

    it('gives the KMS key rotation and a policy that mirrors the grants', () => {
      const roleArn = (route: Route) => ({
        'Fn::GetAtt': [id(stack.broker.functions[route].role), 'Arn'],
      });
      const sweepRoleArn = { 'Fn::GetAtt': [id(stack.broker.sweepFunction.role), 'Arn'] };
      const root = {
        AWS: {
          'Fn::Join': [
            '',
            ['arn:', { Ref: 'AWS::Partition' }, ':iam::', { Ref: 'AWS::AccountId' }, ':root'],
          ],
        },
      };
      synth.template.hasResource('AWS::KMS::Key', {
        DeletionPolicy: 'Retain',
        UpdateReplacePolicy: 'Retain',
        Properties: {
          EnableKeyRotation: true,
          PendingWindowInDays: 30,
          KeyPolicy: {
            Version: '2012-10-17',
            Statement: [
              {
                Sid: 'AccountAdministersKeyWithoutUsingIt',
                Effect: 'Allow',
                Principal: root,
                Action: KEY_ADMIN_ACTIONS,
                Resource: '*',
              },
              {
                Sid: 'BrokerFunctionsGenerateDataKey',
                Effect: 'Allow',
                Principal: root,
                Action: 'kms:GenerateDataKey',
                Resource: '*',
                Condition: {
                  ...PURPOSE_CONDITION,
                  ArnEquals: {
                    'aws:PrincipalArn': [
                      roleArn('refresh'),
                      roleArn('callback'),
                      roleArn('service'),
                      sweepRoleArn,
                    ],
                  },
                },
              },
              {
                Sid: 'BrokerFunctionsDecrypt',
                Effect: 'Allow',
                Principal: root,
                Action: 'kms:Decrypt',
                Resource: '*',
                Condition: {
                  ...PURPOSE_CONDITION,
                  ArnEquals: {
                    'aws:PrincipalArn': [
                      roleArn('refresh'),
                      roleArn('callback'),
                      roleArn('logout'),
                      roleArn('token'),
                      roleArn('service'),
                      sweepRoleArn,
                    ],
                  },
                },
              },
            ],
          },
        },
      });
      for (const action of KEY_ADMIN_ACTIONS) {
        expect(action).not.toMatch(/Encrypt|Decrypt|GenerateDataKey|CreateGrant/);
      }
    });
  });

  describe('data', () => {
    it('keeps sessions in an on-demand table with PITR, TTL, SSE and deletion protection, retained', () => {
      synth.template.hasResource('AWS::DynamoDB::Table', {
        DeletionPolicy: 'Retain',
        UpdateReplacePolicy: 'Retain',
        Properties: {
          KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
          AttributeDefinitions: [
            { AttributeName: 'pk', AttributeType: 'S' },
            { AttributeName: 'orgKey', AttributeType: 'S' },
            { AttributeName: 'userKey', AttributeType: 'S' },
            { AttributeName: 'sweepShard', AttributeType: 'S' },
            { AttributeName: 'sweepAt', AttributeType: 'N' },
          ],
          // Metadata only: the sealed tokens are never projected into the index.
          GlobalSecondaryIndexes: [
            {
              IndexName: 'connectionsByOrganization',
              KeySchema: [
                { AttributeName: 'orgKey', KeyType: 'HASH' },
                { AttributeName: 'userKey', KeyType: 'RANGE' },
              ],
              Projection: {
                ProjectionType: 'INCLUDE',
                NonKeyAttributes: [
                  'connectionId',
                  'orgId',
                  'userId',
                  'instanceUrl',
                  'scope',
                  'createdAt',
                  'committedAt',
                  'version',
                  'absoluteExpiresAt',
                  'idleExpiresAt',
                ],
              },
            },
            // The sweep's: four numbers per due session, never the sealed tokens.
            {
              IndexName: 'sweepDue',
              KeySchema: [
                { AttributeName: 'sweepShard', KeyType: 'HASH' },
                { AttributeName: 'sweepAt', KeyType: 'RANGE' },
              ],
              Projection: {
                ProjectionType: 'INCLUDE',
                NonKeyAttributes: ['version', 'committedAt', 'idleExpiresAt', 'absoluteExpiresAt'],
              },
            },
          ],
          BillingMode: 'PAY_PER_REQUEST',
          PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
          TimeToLiveSpecification: { AttributeName: 'ttl', Enabled: true },
          SSESpecification: { SSEEnabled: true },
          DeletionProtectionEnabled: true,
        },
      });
    });

    it('creates the client secret with a placeholder {"client_id","client_secret"}', () => {
      synth.template.hasResource('AWS::SecretsManager::Secret', {
        DeletionPolicy: 'Retain',
        Properties: {
          GenerateSecretString: {
            SecretStringTemplate: JSON.stringify({ client_id: 'REPLACE_WITH_CONSUMER_KEY' }),
            GenerateStringKey: 'client_secret',
          },
        },
      });
    });

    it('retains every log group', () => {
      const logGroups = resourcesOfType(synth.template, 'AWS::Logs::LogGroup');
      expect(Object.keys(logGroups)).toHaveLength(11);
      for (const group of Object.values(logGroups)) {
        expect(group.DeletionPolicy).toBe('Retain');
        expect(group.Properties.RetentionInDays).toBe(90);
      }
    });
  });

  describe('observability', () => {
    it('alarms on 5xx rate, each alarmed log event and throttles', () => {
      const alarms = resourcesOfType(synth.template, 'AWS::CloudWatch::Alarm');
      // 5xx rate, Lambda throttles, and one per metric of ALARMED_LOG_EVENTS
      // (test/infra/alarms.test.ts ties those to the functions' log events), the
      // keep-alive failure ratio, and the event publisher's dead-letter queue
      // (test/infra/publisher.test.ts).
      expect(Object.keys(alarms)).toHaveLength(10);
      const topic = { Ref: id(stack.broker.node.findChild('AlarmTopic')) };
      for (const alarm of Object.values(alarms)) {
        expect(alarm.Properties.AlarmActions).toEqual([topic]);
        expect(alarm.Properties.OKActions).toEqual([topic]);
        expect(alarm.Properties.TreatMissingData).toBe('notBreaching');
      }
      const service = [{ Name: 'service', Value: 'TokenBroker' }];
      synth.template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        Namespace: 'TokenBroker',
        MetricName: 'UpstreamMisconfigured',
        Dimensions: service,
        Threshold: 1,
      });
      synth.template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        Namespace: 'TokenBroker',
        MetricName: 'IntegrityError',
        Dimensions: service,
      });
      synth.template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        Threshold: 5,
        EvaluationPeriods: 3,
        DatapointsToAlarm: 2,
        Metrics: Match.arrayWith([
          Match.objectLike({ Expression: 'IF(requests >= 20, 100 * errors / requests, 0)' }),
          Match.objectLike({
            Id: 'errors',
            MetricStat: Match.objectLike({
              Metric: Match.objectLike({ Namespace: 'AWS/ApiGateway', MetricName: '5xx' }),
            }),
          }),
        ]),
      });
      synth.template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        Metrics: Match.arrayWith([
          // One term per function: every route's, the service API's, the 404 function and
          // the sweep.
          Match.objectLike({
            Expression: Array.from({ length: ROUTES.length + 3 }, (_, i) => `t${i}`).join(' + '),
          }),
          Match.objectLike({
            MetricStat: Match.objectLike({
              Metric: Match.objectLike({ Namespace: 'AWS/Lambda', MetricName: 'Throttles' }),
            }),
          }),
        ]),
      });
      // Keep-alive failures above 1 % of a run's keep-alives (one run a day).
      synth.template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        Threshold: 0.01,
        Metrics: Match.arrayWith([
          Match.objectLike({ Expression: 'IF(kept + failed > 0, failed / (kept + failed), 0)' }),
          Match.objectLike({
            Id: 'failed',
            MetricStat: Match.objectLike({
              Metric: Match.objectLike({ MetricName: 'KeepAliveFailed', Dimensions: service }),
              Period: 86_400,
            }),
          }),
        ]),
      });
      synth.template.hasResourceProperties('AWS::Scheduler::Schedule', {
        ScheduleExpression: 'cron(15 3 * * ? *)',
        FlexibleTimeWindow: { Mode: 'OFF' },
        Target: Match.objectLike({
          Arn: { 'Fn::GetAtt': [id(stack.broker.sweepFunction.function), 'Arn'] },
        }),
      });
      synth.template.hasResourceProperties('AWS::Lambda::Function', {
        Timeout: 900,
        Handler: 'index.handler',
      });
      synth.template.hasResourceProperties('AWS::SNS::Subscription', {
        Protocol: 'email',
        Endpoint: 'ops@example.com',
      });
    });

    it('draws a dashboard of the broker metrics', () => {
      const [dashboard] = Object.values(
        resourcesOfType(synth.template, 'AWS::CloudWatch::Dashboard'),
      );
      const body = JSON.stringify(dashboard?.Properties.DashboardBody);
      for (const metric of BROKER_METRIC_NAMES) {
        expect(body).toContain(`\\"${metric}\\"`);
      }
    });
  });

  it('outputs the API URL, the callback URL to register and the secret name', () => {
    const outputs = synth.template.toJSON().Outputs as Record<string, { Value: unknown }>;
    expect(Object.keys(outputs).sort()).toEqual([
      'AlarmTopicArn',
      'ApiUrl',
      'CallbackUrl',
      'ClientSecretName',
    ]);
    expect(JSON.stringify(outputs.CallbackUrl?.Value)).toMatch(/\/callback"\]\]\}$/);
    expect(outputs.CallbackUrl?.Value).toEqual(environmentOf('login').CALLBACK_URL);
  });

  function environmentOf(route: Route): Record<string, unknown> {
    const fn = synth.template.toJSON().Resources[fnId(route)];
    return fn.Properties.Environment.Variables;
  }
});

describe('Stack: TokenBroker (custom domain, existing secret and topic, throwaway)', () => {
  let synth: Synthesized;
  const secretArn = 'arn:aws:secretsmanager:eu-west-1:111111111111:secret:sf/broker-client-AbC123';

  beforeAll(() => {
    synth = synthBroker({
      stackName: 'BrokerDev',
      customDomainName: 'auth.example.com',
      customDomainCertificateArn:
        'arn:aws:acm:eu-west-1:111111111111:certificate/0b1c2d3e-0000-4000-8000-000000000000',
      existingClientSecretArn: secretArn,
      alarmTopicArn: 'arn:aws:sns:eu-west-1:111111111111:ops-alarms',
      retainData: 'false',
      functionTimeoutSeconds: '15',
      throttling: '{"refresh":{"rateLimit":200,"burstLimit":400}}',
    });
  });

  it('passes cdk-nag', () => {
    expect(synth.violations).toEqual([]);
  });

  it('serves only the custom domain, and registers its callback URL', () => {
    synth.template.hasResourceProperties('AWS::ApiGatewayV2::Api', {
      DisableExecuteApiEndpoint: true,
    });
    synth.template.hasResourceProperties('AWS::ApiGatewayV2::DomainName', {
      DomainName: 'auth.example.com',
      DomainNameConfigurations: [Match.objectLike({ SecurityPolicy: 'TLS_1_2' })],
    });
    synth.template.resourceCountIs('AWS::ApiGatewayV2::ApiMapping', 1);
    const outputs = synth.template.toJSON().Outputs as Record<string, { Value: unknown }>;
    expect(outputs.CallbackUrl?.Value).toBe('https://auth.example.com/callback');
    expect(outputs.CustomDomainTarget).toBeDefined();
  });

  it('uses the existing secret and topic instead of creating them', () => {
    synth.template.resourceCountIs('AWS::SecretsManager::Secret', 0);
    synth.template.resourceCountIs('AWS::SNS::Topic', 0);
    synth.template.hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          {
            Sid: 'ClientCredentials',
            Effect: 'Allow',
            Action: 'secretsmanager:GetSecretValue',
            Resource: secretArn,
          },
        ]),
      },
    });
    for (const alarm of Object.values(resourcesOfType(synth.template, 'AWS::CloudWatch::Alarm'))) {
      expect(alarm.Properties.AlarmActions).toEqual([
        'arn:aws:sns:eu-west-1:111111111111:ops-alarms',
      ]);
    }
  });

  it('lets a throwaway stack delete its data', () => {
    synth.template.hasResource('AWS::DynamoDB::Table', {
      DeletionPolicy: 'Delete',
      Properties: Match.objectLike({ DeletionProtectionEnabled: false }),
    });
    synth.template.hasResource('AWS::KMS::Key', {
      DeletionPolicy: 'Delete',
      Properties: Match.objectLike({ PendingWindowInDays: 7 }),
    });
  });

  it('moves the whole budget with the function timeout', () => {
    synth.template.hasResourceProperties('AWS::Lambda::Function', {
      Timeout: 15,
      Environment: {
        Variables: Match.objectLike({
          LEASE_MS: '15000',
          WAIT_BUDGET_MS: '13000',
          INVOCATION_DEADLINE_MS: '14000',
          UPSTREAM_TIMEOUT_MS: '8000',
          POWERTOOLS_SERVICE_NAME: 'BrokerDev',
        }),
      },
    });
    synth.template.hasResourceProperties('AWS::ApiGatewayV2::Stage', {
      RouteSettings: Match.objectLike({
        'ANY /refresh': { ThrottlingRateLimit: 200, ThrottlingBurstLimit: 400 },
        'ANY /login': { ThrottlingRateLimit: 50, ThrottlingBurstLimit: 100 },
      }),
    });
  });
});

function collectAcknowledgements(root: IConstruct): { id: string; reason: string }[] {
  const found: { id: string; reason: string }[] = [];
  for (const construct of root.node.findAll()) {
    for (const entry of construct.node.metadata) {
      if (entry.type !== Validations.ACKNOWLEDGED_RULES_METADATA_KEY) continue;
      for (const [id, reason] of Object.entries(entry.data as Record<string, string>)) {
        found.push({ id, reason });
      }
    }
  }
  return found;
}

/** `enforceSSL` on a queue: `Deny sqs:*` when `aws:SecureTransport` is false. */
const DENY_WITHOUT_TLS = 'sqs:*';

function collectActions(value: unknown, found: string[] = []): string[] {
  if (Array.isArray(value)) {
    for (const item of value) collectActions(item, found);
  } else if (value && typeof value === 'object') {
    for (const [key, child] of Object.entries(value)) {
      if (key === 'Action' || key === 'NotAction') {
        found.push(...(Array.isArray(child) ? child : [child]).map(String));
      } else {
        collectActions(child, found);
      }
    }
  }
  return found;
}
