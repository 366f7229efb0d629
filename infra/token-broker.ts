import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Duration, RemovalPolicy, Stack, Token, Validations } from 'aws-cdk-lib';
import { AccessLogFormat } from 'aws-cdk-lib/aws-apigateway';
import {
  type CfnStage,
  DomainName,
  HttpApi,
  HttpMethod,
  HttpRoute,
  HttpRouteKey,
  HttpStage,
  LogGroupLogDestination,
  SecurityPolicy,
} from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpIamAuthorizer } from 'aws-cdk-lib/aws-apigatewayv2-authorizers';
import { HttpLambdaIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import { Certificate } from 'aws-cdk-lib/aws-certificatemanager';
import { Alarm, ComparisonOperator, TreatMissingData } from 'aws-cdk-lib/aws-cloudwatch';
import { SnsAction } from 'aws-cdk-lib/aws-cloudwatch-actions';
import {
  AttributeType,
  BillingMode,
  ProjectionType,
  StreamViewType,
  Table,
  TableEncryption,
} from 'aws-cdk-lib/aws-dynamodb';
import { EventBus, type IEventBus } from 'aws-cdk-lib/aws-events';
import {
  AccountRootPrincipal,
  Grant,
  type IGrantable,
  type IRole,
  PolicyDocument,
  PolicyStatement,
  Role,
  ServicePrincipal,
} from 'aws-cdk-lib/aws-iam';
import { Key } from 'aws-cdk-lib/aws-kms';
import { FilterCriteria, StartingPosition } from 'aws-cdk-lib/aws-lambda';
import { DynamoEventSource, SqsDlq } from 'aws-cdk-lib/aws-lambda-event-sources';
import type { NodejsFunction } from 'aws-cdk-lib/aws-lambda-nodejs';
import { LogGroup, type RetentionDays } from 'aws-cdk-lib/aws-logs';
import { CfnSchedule } from 'aws-cdk-lib/aws-scheduler';
import { type ISecret, Secret } from 'aws-cdk-lib/aws-secretsmanager';
import { type ITopic, Topic } from 'aws-cdk-lib/aws-sns';
import { EmailSubscription } from 'aws-cdk-lib/aws-sns-subscriptions';
import { Queue, QueueEncryption } from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { STREAM_FILTER_PATTERNS } from '../functions/aws/stream-events.ts';
import { serializeClientApps } from '../functions/shared/client-apps.ts';
import {
  CONNECTIONS_BY_ORG_INDEX,
  ENCRYPTION_PURPOSE,
  ITEM_PREFIX,
  SERVICE_ROUTE_KEYS,
  SWEEP_INDEX,
} from '../functions/shared/constants.ts';
import { serializeSalesforceApps } from '../functions/shared/salesforce-apps.ts';
import { environmentOf } from '../functions/shared/settings-table.ts';
import { type BrokerFunction, brokerFunction } from './broker-function.ts';
import { API_GATEWAY_INTEGRATION_TIMEOUT_MS } from './budget.ts';
import { FixedEgress } from './fixed-egress.ts';
import { BrokerObservability } from './observability.ts';
import {
  BROKER_ROUTES,
  type BrokerRoute,
  type ResolvedSettings,
  resolveSettings,
  routeKeysOf,
  type TokenBrokerSettings,
} from './settings.ts';

/** Shared with the functions (one definition in `functions/shared/constants.ts`). */
export { ENCRYPTION_PURPOSE, ITEM_PREFIX };

type KmsAction = 'kms:GenerateDataKey' | 'kms:Decrypt';

export interface FunctionAccess {
  /** DynamoDB actions per item kind; a statement covers only keys with that prefix. */
  items: { kind: keyof typeof ITEM_PREFIX; actions: string[] }[];
  /** Envelope encryption: `GenerateDataKey` to seal a token set, `Decrypt` to open one. */
  kms: KmsAction[];
  /** Reads the connected app's credentials (logout's revoke needs none). */
  clientSecret: boolean;
  /**
   * Sends requests to Salesforce (its token or revoke endpoint). With
   * `fixedEgressIp` such a function runs in the VPC's private subnets, so Salesforce sees
   * the NAT gateways' Elastic IPs; the others stay outside any VPC.
   */
  callsSalesforce: boolean;
  /** Queries the `connectionsByOrganization` index (the service API's listings). */
  queriesConnectionIndex?: boolean;
  /** Queries the `sweepDue` index (the scheduled sweep). */
  queriesSweepIndex?: boolean;
}

/**
 * What each function may do, and nothing else: exactly the DynamoDB actions it sends, on
 * the item kind it touches (`dynamodb:LeadingKeys`), the KMS operations of envelope
 * encryption where it seals or opens a token set, and the client secret where it
 * authenticates to Salesforce. `test/infra/iam-usage.test.ts` runs every route against
 * the local emulators and checks each call it makes against this table.
 */
export const FUNCTION_ACCESS: Record<BrokerRoute, FunctionAccess> = {
  refresh: {
    items: [
      {
        kind: 'session',
        actions: ['dynamodb:GetItem', 'dynamodb:UpdateItem', 'dynamodb:DeleteItem'],
      },
      // A session Salesforce ended (`invalid_grant`) turns its connection pointer into a
      // tombstone and leaves an `ended#` one under its session key, read when its handle
      // comes back (README "Ended connections").
      { kind: 'connection', actions: ['dynamodb:UpdateItem'] },
      { kind: 'ended', actions: ['dynamodb:PutItem', 'dynamodb:GetItem'] },
      // `Upstream Misconfigured`: one conditional put per app every few minutes.
      { kind: 'alert', actions: ['dynamodb:PutItem'] },
    ],
    kms: ['kms:GenerateDataKey', 'kms:Decrypt'],
    clientSecret: true,
    callsSalesforce: true,
  },
  login: {
    // GetItem: a transaction put whose answer was lost is read back.
    items: [{ kind: 'login', actions: ['dynamodb:PutItem', 'dynamodb:GetItem'] }],
    kms: [],
    clientSecret: true,
    // Builds the authorize URL only: the browser, not the function, goes to Salesforce.
    callsSalesforce: false,
  },
  callback: {
    items: [
      // The transaction is consumed by a conditional update (its mark read back when the
      // answer was lost); the consumed item goes with its TTL.
      { kind: 'login', actions: ['dynamodb:UpdateItem', 'dynamodb:GetItem'] },
      // GetItem: a put whose answer was lost is read back. GetItem, DeleteItem and Decrypt:
      // a new login replaces the browser's previous session (read, deleted by version, its
      // refresh token revoked, which needs the token in clear). UpdateItem: the new
      // access token's expiry, noted once introspection has told it.
      {
        kind: 'session',
        actions: [
          'dynamodb:GetItem',
          'dynamodb:PutItem',
          'dynamodb:UpdateItem',
          'dynamodb:DeleteItem',
        ],
      },
      // The new connection's pointer (read back when its answer was lost); a replaced
      // session's becomes its tombstone (UpdateItem), a failed handoff's is deleted.
      {
        kind: 'connection',
        actions: [
          'dynamodb:GetItem',
          'dynamodb:PutItem',
          'dynamodb:UpdateItem',
          'dynamodb:DeleteItem',
        ],
      },
      // A registered app's login: its broker code (read back when the answer was lost).
      { kind: 'code', actions: ['dynamodb:GetItem', 'dynamodb:PutItem'] },
      // The replaced session's tombstone (`replaced`): the pointer marked, its `ended#` twin.
      { kind: 'ended', actions: ['dynamodb:PutItem'] },
      // `Upstream Misconfigured`: one conditional put per app every few minutes.
      { kind: 'alert', actions: ['dynamodb:PutItem'] },
    ],
    kms: ['kms:GenerateDataKey', 'kms:Decrypt'],
    clientSecret: true,
    // Exchanges the code; revokes a replaced session's token, or a new one it cannot keep.
    callsSalesforce: true,
  },
  logout: {
    // Read first, then delete that version: a delete whose answer was lost still revokes.
    items: [
      { kind: 'session', actions: ['dynamodb:GetItem', 'dynamodb:DeleteItem'] },
      // The pointer becomes the `logout` tombstone, with its `ended#` twin.
      { kind: 'connection', actions: ['dynamodb:UpdateItem'] },
      { kind: 'ended', actions: ['dynamodb:PutItem'] },
    ],
    kms: ['kms:Decrypt'],
    clientSecret: false,
    // Revokes the refresh token.
    callsSalesforce: true,
  },
  session: {
    items: [{ kind: 'session', actions: ['dynamodb:GetItem'] }],
    kms: [],
    clientSecret: false,
    callsSalesforce: false,
  },
  token: {
    items: [
      // Spent with a conditional UpdateItem, read back when it fails or its answer is lost.
      { kind: 'code', actions: ['dynamodb:GetItem', 'dynamodb:UpdateItem'] },
      // A replayed or refused code ends its connection as a logout does: read, delete that
      // version (with its pointer), revoke the refresh token (which needs it in clear).
      { kind: 'session', actions: ['dynamodb:GetItem', 'dynamodb:DeleteItem'] },
      // A refused code deletes the pointer; a replayed one turns it into the
      // `code_replayed` tombstone, with its `ended#` twin.
      { kind: 'connection', actions: ['dynamodb:DeleteItem', 'dynamodb:UpdateItem'] },
      { kind: 'ended', actions: ['dynamodb:PutItem'] },
    ],
    kms: ['kms:Decrypt'],
    clientSecret: false,
    // A replayed or refused code revokes its connection's refresh token.
    callsSalesforce: true,
  },
  service: {
    items: [
      // Refresh (acquire, commit, release; delete on invalid_grant) and end (read, then
      // delete that version) a session found through its connection pointer.
      {
        kind: 'session',
        actions: ['dynamodb:GetItem', 'dynamodb:UpdateItem', 'dynamodb:DeleteItem'],
      },
      // GetItem also reads an ended connection's tombstone; UpdateItem turns a pointer into
      // one (a grant Salesforce ended, a connection ended here), PutItem writes its `ended#`
      // twin. A tombstone read by a refresh racing the end is not granted: it only explains,
      // and without it the call answers 404 all the same.
      {
        kind: 'connection',
        actions: ['dynamodb:GetItem', 'dynamodb:UpdateItem'],
      },
      { kind: 'ended', actions: ['dynamodb:PutItem'] },
      // `Upstream Misconfigured` from a service token refresh.
      { kind: 'alert', actions: ['dynamodb:PutItem'] },
    ],
    kms: ['kms:GenerateDataKey', 'kms:Decrypt'],
    clientSecret: true,
    queriesConnectionIndex: true,
    // Refreshes at the token endpoint and revokes the connections it ends.
    callsSalesforce: true,
  },
};

/**
 * The scheduled sweep (README "Keep-alive and expiry"), which serves no route: it queries
 * the sweep index, refreshes through the lease as `/refresh` does (acquire, commit,
 * release; on `invalid_grant` the tombstoned delete), and ends expired sessions as the
 * service API's DELETE does (read, tombstone, delete that version, revoke). GetItem on
 * `ended#`: a keep-alive whose session vanished meanwhile reads why, as `/refresh` does.
 */
export const SWEEP_ACCESS: FunctionAccess = {
  items: [
    {
      kind: 'session',
      actions: ['dynamodb:GetItem', 'dynamodb:UpdateItem', 'dynamodb:DeleteItem'],
    },
    { kind: 'connection', actions: ['dynamodb:UpdateItem'] },
    { kind: 'ended', actions: ['dynamodb:PutItem', 'dynamodb:GetItem'] },
  ],
  kms: ['kms:GenerateDataKey', 'kms:Decrypt'],
  clientSecret: true,
  callsSalesforce: true,
  queriesSweepIndex: true,
};

/** The sweep's timeout: Lambda's maximum; it stops starting work a lease before it. */
const SWEEP_TIMEOUT = Duration.minutes(15);

/**
 * Memory per function, chosen by `npm run bench` ("Bundles and cold start"): peak RSS
 * after a warm invocation is about 80 MB, so memory is not the limit; CPU is. Lambda gives
 * CPU in proportion to memory (1,769 MB = one vCPU), and a cold start (importing the bundle,
 * then the first invocation) is about 130-200 ms of CPU on a full core: projected 1.0-1.4 s
 * at 256 MB, 0.5-0.7 s at 512 MB, 0.25-0.35 s at 1024 MB. 512 MB is the smallest size
 * under the 800 ms target; warm invocations wait on the network, so more memory would mostly
 * cost more. Each entry bundles only the adapters it uses (`functions/production.ts`: login
 * has no KMS client, logout no Secrets Manager client), but the SDK core they all share
 * dominates: the four bundles differ by about a tenth in size, hence one size for the four.
 */
export const MEMORY_MB: Record<BrokerRoute | 'notFound', number> = {
  refresh: 512,
  login: 512,
  callback: 512,
  logout: 512,
  session: 512,
  token: 512,
  service: 512,
  notFound: 128,
};

/**
 * The one call the publisher makes (the stream is read by its event source mapping, with
 * the grants CDK adds for it); `test/infra/iam-usage.test.ts` records it.
 */
export const PUBLISHER_ACCESS = { actions: ['events:PutEvents'] } as const;

/** The publisher only maps records and calls `PutEvents`: the smallest size does. */
export const PUBLISHER_MEMORY_MB = 256;
export const PUBLISHER_TIMEOUT = Duration.seconds(30);
/**
 * A batch that keeps failing is retried this often (bisected each time), within this age
 * of its records, then handed to the dead-letter queue: the stream keeps records 24 hours.
 */
export const PUBLISHER_RETRY_ATTEMPTS = 20;
export const PUBLISHER_MAX_RECORD_AGE = Duration.hours(6);

/** Login stores a transaction and reads the secret; it never waits on Salesforce. */
const LOGIN_TIMEOUT = Duration.seconds(6);

/** Key administration without key use: no Encrypt/Decrypt/GenerateDataKey, no CreateGrant. */
export const KEY_ADMIN_ACTIONS = [
  'kms:CancelKeyDeletion',
  'kms:CreateAlias',
  'kms:DeleteAlias',
  'kms:DescribeKey',
  'kms:DisableKey',
  'kms:DisableKeyRotation',
  'kms:EnableKey',
  'kms:EnableKeyRotation',
  'kms:GetKeyPolicy',
  'kms:GetKeyRotationStatus',
  'kms:ListGrants',
  'kms:ListKeyPolicies',
  'kms:ListKeyRotations',
  'kms:ListResourceTags',
  'kms:PutKeyPolicy',
  'kms:RevokeGrant',
  'kms:RotateKeyOnDemand',
  'kms:ScheduleKeyDeletion',
  'kms:TagResource',
  'kms:UntagResource',
  'kms:UpdateAlias',
  'kms:UpdateKeyDescription',
];

/** JSON access log line: no query string, cookie, header or authorizer value. */
export const ACCESS_LOG_FIELDS = {
  requestId: '$context.requestId',
  requestTime: '$context.requestTime',
  requestTimeEpoch: '$context.requestTimeEpoch',
  ip: '$context.identity.sourceIp',
  userAgent: '$context.identity.userAgent',
  domainName: '$context.domainName',
  httpMethod: '$context.httpMethod',
  routeKey: '$context.routeKey',
  path: '$context.path',
  protocol: '$context.protocol',
  status: '$context.status',
  responseLength: '$context.responseLength',
  responseLatency: '$context.responseLatency',
  integrationLatency: '$context.integrationLatency',
  integrationStatus: '$context.integrationStatus',
  integrationError: '$context.integrationErrorMessage',
  error: '$context.error.message',
};

export interface TokenBrokerProps extends TokenBrokerSettings {
  /**
   * Directory with `package-lock.json` and `functions/<route>.ts`; default: this
   * repository. Another CDK app importing the construct can point it at its copy.
   */
  readonly projectRoot?: string;
}

/** What each route's function is for (its Lambda description and its role's). */
const ROUTE_DESCRIPTIONS: Record<BrokerRoute, string> = {
  refresh: 'token broker POST /refresh (single-flight Salesforce refresh)',
  login: 'token broker GET /login (starts the Web Server Flow with PKCE)',
  callback: 'token broker GET /callback (code exchange, session creation)',
  logout: 'token broker POST /logout (revoke and delete the session)',
  session: "token broker GET /session (the caller's connection metadata, never a token)",
  token: 'token broker POST /token (redeems a one-time broker code for a session handle)',
  service:
    'token broker service API /connections (IAM-authorized backend jobs: tokens, listings, revocation)',
};

/**
 * The Salesforce token broker: an HTTP API with `/login`, `/callback`, `/refresh` and
 * `/logout`, one least-privilege function per route, a DynamoDB table for sessions and
 * login transactions, a KMS key for envelope encryption of refresh tokens, the connected
 * app's credentials in Secrets Manager, alarms and a dashboard.
 */
export class TokenBroker extends Construct {
  readonly settings: ResolvedSettings;
  readonly api: HttpApi;
  readonly stage: HttpStage;
  /** Public base URL (custom domain when set), with a trailing slash. */
  readonly url: string;
  /** The redirect URI to register in the connected app. */
  readonly callbackUrl: string;
  readonly table: Table;
  readonly key: Key;
  /** The default (first) connected app's secret. */
  readonly clientSecret: ISecret;
  /**
   * Every connected app's secret, the default app's first (`salesforceApps`; one entry,
   * named `default`, without it).
   */
  readonly appSecrets: readonly { name: string; secret: ISecret }[];
  readonly functions: Record<BrokerRoute, BrokerFunction>;
  readonly notFoundFunction: BrokerFunction;
  /** The scheduled sweep (keep-alive and expiry) and its EventBridge Scheduler schedule. */
  readonly sweepFunction: BrokerFunction;
  readonly sweepSchedule: CfnSchedule;
  readonly alarmTopic: ITopic;
  readonly observability: BrokerObservability;
  readonly domainName: DomainName | undefined;
  /** The VPC and Elastic IPs of `fixedEgressIp`; `undefined` without it. */
  readonly fixedEgress: FixedEgress | undefined;
  /** Where the events go (README "Events"): `eventBusArn`'s bus, or one made here. */
  readonly eventBus: IEventBus;
  /** Reads the table's stream and puts the events on the bus. */
  readonly publisher: BrokerFunction;
  /** The publisher's on-failure destination: batches it gave up on (alarmed). */
  readonly publisherDeadLetters: Queue;

  /**
   * What is deployed, in the order it is created. The order is part of the template
   * (resources are listed in creation order) and of the dependencies: each builder reads
   * the members assigned above it.
   */
  constructor(scope: Construct, id: string, props: TokenBrokerProps = {}) {
    super(scope, id);
    this.settings = resolveSettings(props, {
      serviceName: Stack.of(this).stackName,
      isToken: (value) => Token.isUnresolved(value),
    });
    const projectRoot = props.projectRoot ?? join(dirname(fileURLToPath(import.meta.url)), '..');

    this.table = this.createTable();
    this.key = this.createKey();
    this.clientSecret = this.resolveClientSecret();
    this.appSecrets = this.resolveAppSecrets();
    // The API and its stage come first: the functions' CALLBACK_URL needs the endpoint.
    this.api = this.createApi();
    this.domainName = this.createDomainName();
    this.stage = this.createStage();
    this.url = this.settings.customDomain
      ? `https://${this.settings.customDomain.domainName}/`
      : this.stage.url;
    this.callbackUrl = `${this.url}callback`;
    this.fixedEgress = this.createFixedEgress();
    this.functions = this.createRouteFunctions(projectRoot);
    this.notFoundFunction = this.createNotFoundFunction(projectRoot);
    this.sweepFunction = this.createSweepFunction(projectRoot);
    this.sweepSchedule = this.createSweepSchedule();
    this.addKeyPolicy();
    const routes = this.addRoutes();
    this.applyThrottling(routes);
    this.alarmTopic = this.resolveAlarmTopic();
    this.observability = this.createObservability();
    this.eventBus = this.resolveEventBus();
    this.publisherDeadLetters = this.createPublisherDeadLetters();
    this.publisher = this.createPublisher(projectRoot);
  }

  /** The table, key, secret and log groups outlive the stack only with `retainData`. */
  private get removalPolicy(): RemovalPolicy {
    return this.settings.retainData ? RemovalPolicy.RETAIN : RemovalPolicy.DESTROY;
  }

  private get logRetention(): RetentionDays {
    return this.settings.logRetentionDays as RetentionDays;
  }

  private createTable(): Table {
    const table = new Table(this, 'Table', {
      partitionKey: { name: 'pk', type: AttributeType.STRING },
      billingMode: BillingMode.PAY_PER_REQUEST,
      timeToLiveAttribute: 'ttl',
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      // Tokens are already sealed with the broker's key; the table's own SSE uses the
      // AWS managed key so no extra KMS permission reaches the functions.
      encryption: TableEncryption.AWS_MANAGED,
      deletionProtection: this.settings.retainData,
      removalPolicy: this.removalPolicy,
      // The events' source (README "Events"): the publisher reads both images.
      stream: StreamViewType.NEW_AND_OLD_IMAGES,
    });
    // Lists a customer's connections (the service API) without a scan; sparse: only
    // session items carry its keys, and it holds metadata, never the sealed tokens.
    table.addGlobalSecondaryIndex({
      indexName: CONNECTIONS_BY_ORG_INDEX.name,
      partitionKey: { name: CONNECTIONS_BY_ORG_INDEX.partitionKey, type: AttributeType.STRING },
      sortKey: { name: CONNECTIONS_BY_ORG_INDEX.sortKey, type: AttributeType.STRING },
      projectionType: ProjectionType.INCLUDE,
      nonKeyAttributes: [...CONNECTIONS_BY_ORG_INDEX.projected],
    });
    // The sweep finds sessions due for keep-alive or expiry without a scan (README
    // "Keep-alive and expiry"); sparse, sharded, and it holds four numbers per session.
    table.addGlobalSecondaryIndex({
      indexName: SWEEP_INDEX.name,
      partitionKey: { name: SWEEP_INDEX.partitionKey, type: AttributeType.STRING },
      sortKey: { name: SWEEP_INDEX.sortKey, type: AttributeType.NUMBER },
      projectionType: ProjectionType.INCLUDE,
      nonKeyAttributes: [...SWEEP_INDEX.projected],
    });
    return table;
  }

  /** The envelope key; its policy starts with administration only (see `addKeyPolicy`). */
  private createKey(): Key {
    return new Key(this, 'TokenKey', {
      description: `Envelope encryption of Salesforce refresh tokens (${Stack.of(this).stackName} token broker)`,
      enableKeyRotation: true,
      pendingWindow: Duration.days(this.settings.retainData ? 30 : 7),
      removalPolicy: this.removalPolicy,
      policy: new PolicyDocument({
        statements: [
          new PolicyStatement({
            sid: 'AccountAdministersKeyWithoutUsingIt',
            principals: [new AccountRootPrincipal()],
            actions: KEY_ADMIN_ACTIONS,
            resources: ['*'],
          }),
        ],
      }),
    });
  }

  /** The operator's existing secret when set, otherwise a placeholder to fill after deploy. */
  private resolveClientSecret(): ISecret {
    // The default app may name its secret in `salesforceApps` instead (never both, differing).
    const existingClientSecretArn =
      this.settings.salesforceApps[0]?.secret_arn ?? this.settings.existingClientSecretArn;
    if (existingClientSecretArn) {
      return Secret.fromSecretCompleteArn(this, 'ClientSecret', existingClientSecretArn);
    }
    return this.placeholderSecret('ClientSecret');
  }

  /**
   * The secrets of the apps after the first (each its `secret_arn`, or a placeholder of its
   * own); the first app's is {@link clientSecret}, so adding apps to a single-app stack
   * keeps its secret.
   */
  private resolveAppSecrets(): { name: string; secret: ISecret }[] {
    const [first, ...others] = this.settings.salesforceApps;
    return [
      { name: first?.name ?? 'default', secret: this.clientSecret },
      ...others.map((app) => {
        const id = `AppSecret${app.name.replace(/(?:^|[-_])([a-z0-9])/g, (_, c: string) => c.toUpperCase())}`;
        return {
          name: app.name,
          secret: app.secret_arn
            ? Secret.fromSecretCompleteArn(this, id, app.secret_arn)
            : this.placeholderSecret(id),
        };
      }),
    ];
  }

  /** A secret to fill after deploy with the connected app's `{"client_id","client_secret"}`. */
  private placeholderSecret(id: string): ISecret {
    const secret = new Secret(this, id, {
      description:
        'Salesforce connected app credentials {"client_id","client_secret"} for the token ' +
        'broker. Placeholder until set with "aws secretsmanager put-secret-value".',
      generateSecretString: {
        secretStringTemplate: JSON.stringify({ client_id: 'REPLACE_WITH_CONSUMER_KEY' }),
        generateStringKey: 'client_secret',
        excludePunctuation: true,
        passwordLength: 32,
      },
      removalPolicy: this.removalPolicy,
    });
    Validations.of(secret).acknowledge({
      id: 'AwsSolutions::AwsSolutions-SMG4',
      reason:
        "The secret holds the connected app's consumer key and secret, which only " +
        'Salesforce can issue; a rotation Lambda cannot mint a new one. Operators rotate ' +
        'in Salesforce, then put-secret-value; the functions re-read the secret on ' +
        'invalid_client, so the new value takes effect without a deploy.',
    });
    return secret;
  }

  private createApi(): HttpApi {
    const { stackName } = Stack.of(this);
    return new HttpApi(this, 'Api', {
      apiName: `${stackName}-token-broker`,
      description: `Salesforce token broker (${stackName})`,
      createDefaultStage: false,
      // With a custom domain, one host only: the __Host- cookies are bound to it.
      disableExecuteApiEndpoint: this.settings.customDomain !== undefined,
    });
  }

  private createDomainName(): DomainName | undefined {
    const { customDomain } = this.settings;
    if (!customDomain) return undefined;
    return new DomainName(this, 'DomainName', {
      domainName: customDomain.domainName,
      certificate: Certificate.fromCertificateArn(this, 'Certificate', customDomain.certificateArn),
      securityPolicy: SecurityPolicy.TLS_1_2,
    });
  }

  /** The `$default` stage with JSON access logs and the default throttle. */
  private createStage(): HttpStage {
    const accessLogs = new LogGroup(this, 'AccessLogs', {
      retention: this.logRetention,
      removalPolicy: this.removalPolicy,
    });
    return new HttpStage(this, 'Stage', {
      httpApi: this.api,
      stageName: '$default',
      autoDeploy: true,
      throttle: this.settings.throttling.default,
      accessLogSettings: {
        destination: new LogGroupLogDestination(accessLogs),
        format: AccessLogFormat.custom(JSON.stringify(ACCESS_LOG_FIELDS)),
      },
      ...(this.domainName ? { domainMapping: { domainName: this.domainName } } : {}),
    });
  }

  /**
   * The configuration every route function reads (`functions/broker/config.ts`): each
   * variable of the settings table, from the resolved settings, the timeout budget and the
   * construct's resources.
   */
  private functionEnvironment(): Record<string, string> {
    const { settings } = this;
    return {
      ...environmentOf({
        ...settings,
        ...settings.budget,
        tableName: this.table.tableName,
        kmsKeyId: this.key.keyArn,
        clientSecretId: this.clientSecret.secretArn,
        callbackUrl: this.callbackUrl,
        // The default app's, which the first of `salesforceApps` may set itself.
        salesforceLoginUrl: settings.salesforceApps[0]?.login_url ?? settings.salesforceLoginUrl,
        scopes: settings.salesforceApps[0]?.scopes ?? settings.scopes,
      }),
      // A JSON list outside the table (see `clientApps` in functions/broker/config.ts).
      CLIENT_APPS: serializeClientApps(settings.clientApps),
      // Likewise (see `salesforceApps` there); empty for the one app of the single-app settings.
      SALESFORCE_APPS:
        settings.salesforceApps.length === 0
          ? ''
          : serializeSalesforceApps(
              settings.salesforceApps.map((app, index) => ({
                name: app.name,
                secretId: (this.appSecrets[index] ?? this.appSecrets[0])?.secret.secretArn ?? '',
                loginUrl: app.login_url ?? settings.salesforceLoginUrl,
                scopes: app.scopes ?? settings.scopes,
              })),
            ),
    };
  }

  private createFixedEgress(): FixedEgress | undefined {
    const { fixedEgress } = this.settings;
    if (!fixedEgress) return undefined;
    return new FixedEgress(this, 'FixedEgress', {
      ...fixedEgress,
      logRetention: this.logRetention,
      removalPolicy: this.removalPolicy,
    });
  }

  /**
   * One function per route, each granted exactly its `FUNCTION_ACCESS`; those that call
   * Salesforce run behind the fixed egress IPs when there are some.
   */
  private createRouteFunctions(projectRoot: string): Record<BrokerRoute, BrokerFunction> {
    const environment = this.functionEnvironment();
    const functionTimeout = Duration.millis(this.settings.budget.functionTimeoutMs);
    const make = (route: BrokerRoute): BrokerFunction => {
      const created = brokerFunction(this, capitalize(route), {
        entry: join(projectRoot, 'functions', `${route}.ts`),
        projectRoot,
        description: ROUTE_DESCRIPTIONS[route],
        memorySize: MEMORY_MB[route],
        timeout: route === 'login' ? LOGIN_TIMEOUT : functionTimeout,
        environment,
        logRetention: this.logRetention,
        removalPolicy: this.removalPolicy,
        ...(this.fixedEgress && FUNCTION_ACCESS[route].callsSalesforce
          ? { network: this.fixedEgress.functionNetwork }
          : {}),
      });
      this.grantAccess(created, FUNCTION_ACCESS[route]);
      return created;
    };
    return {
      refresh: make('refresh'),
      login: make('login'),
      callback: make('callback'),
      logout: make('logout'),
      session: make('session'),
      token: make('token'),
      service: make('service'),
    };
  }

  /**
   * The sweep: the routes' environment, exactly {@link SWEEP_ACCESS}, in the VPC behind the
   * fixed egress IPs when there are some (it calls Salesforce).
   */
  private createSweepFunction(projectRoot: string): BrokerFunction {
    const created = brokerFunction(this, 'Sweep', {
      entry: join(projectRoot, 'functions', 'sweep.ts'),
      projectRoot,
      description: 'token broker scheduled sweep (keep-alive inside the idle policy, expiry)',
      memorySize: 512,
      timeout: SWEEP_TIMEOUT,
      environment: this.functionEnvironment(),
      logRetention: this.logRetention,
      removalPolicy: this.removalPolicy,
      ...(this.fixedEgress && SWEEP_ACCESS.callsSalesforce
        ? { network: this.fixedEgress.functionNetwork }
        : {}),
    });
    this.grantAccess(created, SWEEP_ACCESS);
    return created;
  }

  /**
   * EventBridge Scheduler invokes the sweep on `sweepSchedule` (default once a day), with a
   * role that may invoke exactly that function and nothing else. One run at a time is
   * enough: a run stops before its timeout, and the next takes up what is still due.
   */
  private createSweepSchedule(): CfnSchedule {
    const role = new Role(this, 'SweepScheduleRole', {
      assumedBy: new ServicePrincipal('scheduler.amazonaws.com', {
        conditions: { StringEquals: { 'aws:SourceAccount': Stack.of(this).account } },
      }),
      description: 'EventBridge Scheduler invokes the token broker sweep',
    });
    role.addToPolicy(
      new PolicyStatement({
        sid: 'InvokeSweep',
        actions: ['lambda:InvokeFunction'],
        resources: [this.sweepFunction.function.functionArn],
      }),
    );
    return new CfnSchedule(this, 'SweepSchedule', {
      description: 'Token broker sweep: keep-alive and expiry (README "Keep-alive and expiry")',
      scheduleExpression: this.settings.sweepSchedule,
      flexibleTimeWindow: { mode: 'OFF' },
      target: {
        arn: this.sweepFunction.function.functionArn,
        roleArn: role.roleArn,
        input: '{}',
        retryPolicy: { maximumRetryAttempts: 0 },
      },
    });
  }

  /** The `$default` route's function: no configuration and no permission. */
  private createNotFoundFunction(projectRoot: string): BrokerFunction {
    return brokerFunction(this, 'NotFound', {
      entry: join(projectRoot, 'functions', 'not-found.ts'),
      projectRoot,
      description: 'token broker $default route (404 not_found JSON for unknown paths)',
      memorySize: MEMORY_MB.notFound,
      timeout: Duration.seconds(3),
      environment: {},
      logRetention: this.logRetention,
      removalPolicy: this.removalPolicy,
    });
  }

  /**
   * Every method of a route reaches its function, which answers 405 to wrong methods and
   * the CORS preflight (OPTIONS) itself: HTTP API's CORS setting is API-wide, and the
   * contract wants CORS on /refresh and /logout only. Returns the routes by route key.
   */
  private addRoutes(): Map<string, HttpRoute> {
    const integrationTimeout = Duration.millis(API_GATEWAY_INTEGRATION_TIMEOUT_MS);
    const routes = new Map<string, HttpRoute>();
    for (const route of BROKER_ROUTES) {
      if (route === 'service') continue;
      const [created] = this.api.addRoutes({
        path: `/${route}`,
        methods: [HttpMethod.ANY],
        integration: new HttpLambdaIntegration(
          `${capitalize(route)}Integration`,
          this.functions[route].function,
          { timeout: integrationTimeout },
        ),
      });
      if (created) routes.set(`ANY /${route}`, created);
    }
    const notFoundRoute = new HttpRoute(this, 'DefaultRoute', {
      httpApi: this.api,
      routeKey: HttpRouteKey.DEFAULT,
      integration: new HttpLambdaIntegration(
        'NotFoundIntegration',
        this.notFoundFunction.function,
        {
          timeout: integrationTimeout,
        },
      ),
    });
    routes.set('$default', notFoundRoute);
    this.acknowledgeNoAuthorizers(routes);
    for (const [routeKey, route] of this.addServiceRoutes(integrationTimeout)) {
      routes.set(routeKey, route);
    }
    return routes;
  }

  /**
   * The service API: each of its route keys with `AWS_IAM` authorization (SigV4; API
   * Gateway answers `403 {"message":"Forbidden"}` to anything else before the function
   * runs), all integrated with the one `service` function.
   * @see https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-access-control-iam.html
   */
  private addServiceRoutes(integrationTimeout: Duration): Map<string, HttpRoute> {
    const integration = new HttpLambdaIntegration(
      'ServiceIntegration',
      this.functions.service.function,
      { timeout: integrationTimeout },
    );
    const authorizer = new HttpIamAuthorizer();
    const routes = new Map<string, HttpRoute>();
    for (const routeKey of SERVICE_ROUTE_KEYS) {
      const [method, path] = routeKey.split(' ') as [HttpMethod, string];
      const [created] = this.api.addRoutes({ path, methods: [method], integration, authorizer });
      if (created) routes.set(routeKey, created);
    }
    return routes;
  }

  /**
   * The `execute-api:Invoke` ARNs of the service API's routes on this stage: each route
   * key with its path parameter as `*` (IAM matches route ARNs, not route keys).
   * @see https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-access-control-iam.html
   */
  serviceRouteArns(): string[] {
    return SERVICE_ROUTE_KEYS.map((routeKey) => {
      const [method, path = ''] = routeKey.split(' ');
      return this.api.arnForExecuteApi(
        method,
        path.replace(/\{[^}]+\}/g, '*'),
        this.stage.stageName,
      );
    });
  }

  /**
   * Lets `grantee` (a backend job's role or function, in this account) call the service
   * API: `execute-api:Invoke` on exactly its route ARNs. HTTP APIs have no resource
   * policies, so a caller in another account assumes a role granted here.
   */
  grantServiceAccess(grantee: IGrantable): Grant {
    return Grant.addToPrincipal({
      grantee,
      actions: ['execute-api:Invoke'],
      resourceArns: this.serviceRouteArns(),
    });
  }

  /**
   * Route-level throttling (the L2 stage only sets the default route settings). The
   * stage must be updated after its routes exist, or CloudFormation cannot find them.
   */
  private applyThrottling(routes: Map<string, HttpRoute>): void {
    const cfnStage = this.stage.node.defaultChild as CfnStage;
    cfnStage.routeSettings = Object.fromEntries(
      BROKER_ROUTES.flatMap((route) =>
        routeKeysOf(route).map((routeKey) => [
          routeKey,
          {
            ThrottlingRateLimit: this.settings.throttling[route].rateLimit,
            ThrottlingBurstLimit: this.settings.throttling[route].burstLimit,
          },
        ]),
      ),
    );
    for (const route of routes.values()) this.stage.node.addDependency(route);
  }

  /** The operator's topic when set, otherwise the broker's own; email subscribed if set. */
  private resolveAlarmTopic(): ITopic {
    const { alarmTopicArn, alarmEmail } = this.settings;
    const topic = alarmTopicArn
      ? Topic.fromTopicArn(this, 'AlarmTopic', alarmTopicArn)
      : new Topic(this, 'AlarmTopic', { displayName: 'Token broker alarms', enforceSSL: true });
    if (alarmEmail) topic.addSubscription(new EmailSubscription(alarmEmail));
    return topic;
  }

  /** Metrics, alarms on the alarm topic, and the dashboard, over the API and every function. */
  private createObservability(): BrokerObservability {
    return new BrokerObservability(this, 'Observability', {
      namespace: this.settings.metricsNamespace,
      serviceName: this.settings.serviceName,
      api: this.api,
      functions: {
        ...Object.fromEntries(
          BROKER_ROUTES.map((route) => [route, this.functions[route].function]),
        ),
        notFound: this.notFoundFunction.function,
        sweep: this.sweepFunction.function,
      } as Record<string, NodejsFunction>,
      topic: this.alarmTopic,
    });
  }

  private resolveEventBus(): IEventBus {
    const { eventBusArn } = this.settings;
    return eventBusArn
      ? EventBus.fromEventBusArn(this, 'EventBus', eventBusArn)
      : new EventBus(this, 'EventBus', {
          description: `Connection lifecycle events of the ${Stack.of(this).stackName} token broker`,
        });
  }

  /**
   * The batches the event source mapping gave up on (retries or record age exhausted):
   * their shard and sequence numbers, to replay from the stream within its 24 hours. Any
   * message is an alarm.
   */
  private createPublisherDeadLetters(): Queue {
    const queue = new Queue(this, 'PublisherDeadLetters', {
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
      removalPolicy: this.removalPolicy,
    });
    Validations.of(queue).acknowledge({
      id: 'AwsSolutions::AwsSolutions-SQS3',
      reason:
        "It is a dead-letter queue itself: the publisher's event source mapping's on-failure " +
        'destination, alarmed on its first message.',
    });
    const alarm = new Alarm(this, 'PublisherDeadLettersAlarm', {
      alarmDescription:
        'The event publisher gave up on stream records (README "Events"): replay them from ' +
        'the table stream before it trims them (24 hours).',
      metric: queue.metricApproximateNumberOfMessagesVisible({ period: Duration.minutes(1) }),
      threshold: 1,
      evaluationPeriods: 1,
      comparisonOperator: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      treatMissingData: TreatMissingData.NOT_BREACHING,
    });
    alarm.addAlarmAction(new SnsAction(this.alarmTopic));
    alarm.addOkAction(new SnsAction(this.alarmTopic));
    return queue;
  }

  /**
   * The event publisher (`functions/publisher.ts`): the table's stream, filtered to the
   * writes that make events (so lease writes never invoke it), in batches that answer
   * their failed records (`ReportBatchItemFailures`, bisected on error), retried a bounded
   * number of times within a bounded record age, then sent to the dead-letter queue.
   * It may call `events:PutEvents` on the one bus and nothing else.
   */
  private createPublisher(projectRoot: string): BrokerFunction {
    const publisher = brokerFunction(this, 'Publisher', {
      entry: join(projectRoot, 'functions', 'publisher.ts'),
      projectRoot,
      description: 'token broker event publisher (table stream to EventBridge)',
      memorySize: PUBLISHER_MEMORY_MB,
      timeout: PUBLISHER_TIMEOUT,
      environment: {
        EVENT_BUS_NAME: this.eventBus.eventBusArn,
        POWERTOOLS_SERVICE_NAME: this.settings.serviceName,
        LOG_LEVEL: this.settings.logLevel,
      },
      logRetention: this.logRetention,
      removalPolicy: this.removalPolicy,
    });
    publisher.allow(
      new PolicyStatement({
        sid: 'PublishEvents',
        actions: [...PUBLISHER_ACCESS.actions],
        resources: [this.eventBus.eventBusArn],
      }),
    );
    publisher.function.addEventSource(
      new DynamoEventSource(this.table, {
        startingPosition: StartingPosition.TRIM_HORIZON,
        batchSize: 100,
        maxBatchingWindow: Duration.seconds(1),
        bisectBatchOnError: true,
        reportBatchItemFailures: true,
        retryAttempts: PUBLISHER_RETRY_ATTEMPTS,
        maxRecordAge: PUBLISHER_MAX_RECORD_AGE,
        parallelizationFactor: 1,
        onFailure: new SqsDlq(this.publisherDeadLetters),
        filters: STREAM_FILTER_PATTERNS.map((pattern) => FilterCriteria.filter(pattern)),
      }),
    );
    Validations.of(publisher.role).acknowledge({
      id: 'AwsSolutions::AwsSolutions-IAM5[Resource::*]',
      reason:
        "The event source mapping reads the table's stream with the function's role; " +
        'dynamodb:ListStreams supports no resource-level permission (CDK grantStreamRead).',
    });
    return publisher;
  }

  /**
   * Turns one function's `FUNCTION_ACCESS` entry into its statements. Long on purpose: one
   * statement per kind of access, side by side, so every grant a function can get is read
   * in one place (`test/infra/iam-usage.test.ts` checks them against recorded calls).
   */
  private grantAccess(target: BrokerFunction, access: FunctionAccess): void {
    for (const { kind, actions } of access.items) {
      target.allow(
        new PolicyStatement({
          sid: ITEM_STATEMENT_IDS[kind],
          actions,
          resources: [this.table.tableArn],
          conditions: {
            'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': [`${ITEM_PREFIX[kind]}*`] },
          },
        }),
      );
    }
    if (access.queriesConnectionIndex) {
      target.allow(
        new PolicyStatement({
          sid: 'ConnectionsByOrganization',
          actions: ['dynamodb:Query'],
          resources: [`${this.table.tableArn}/index/${CONNECTIONS_BY_ORG_INDEX.name}`],
        }),
      );
    }
    if (access.queriesSweepIndex) {
      target.allow(
        new PolicyStatement({
          sid: 'SweepIndex',
          actions: ['dynamodb:Query'],
          resources: [`${this.table.tableArn}/index/${SWEEP_INDEX.name}`],
        }),
      );
    }
    if (access.kms.length > 0) {
      target.allow(
        new PolicyStatement({
          sid: 'TokenEnvelope',
          actions: access.kms,
          resources: [this.key.keyArn],
          conditions: encryptionContextConditions(),
        }),
      );
    }
    if (access.clientSecret) {
      target.allow(
        new PolicyStatement({
          sid: 'ClientCredentials',
          actions: ['secretsmanager:GetSecretValue'],
          // Exactly the connected apps' secrets (one per app).
          resources: this.appSecrets.map((app) => app.secret.secretArn),
        }),
      );
      const secretKeyArn = this.settings.existingClientSecretKeyArn;
      if (secretKeyArn !== undefined) {
        // GetSecretValue on a secret under a customer-managed key makes Secrets Manager
        // call kms:Decrypt as the caller. Only through Secrets Manager in this region, and
        // only for this secret (Secrets Manager puts its ARN in the encryption context):
        // the role cannot use the key directly or for any other secret.
        target.allow(
          new PolicyStatement({
            sid: 'ClientCredentialsKey',
            actions: ['kms:Decrypt'],
            resources: [secretKeyArn],
            conditions: {
              StringEquals: {
                'kms:ViaService': `secretsmanager.${Stack.of(this).region}.amazonaws.com`,
                'kms:EncryptionContext:SecretARN': this.clientSecret.secretArn,
              },
            },
          }),
        );
      }
    }
  }

  /**
   * The key policy mirrors the functions' grants: the account may administer the key but
   * not use it, and each KMS operation is allowed only to the roles that need it, only
   * for the broker's encryption context. (Principals are named in a condition rather than
   * as principals, so a role being created cannot fail the key policy's validation.)
   */
  private addKeyPolicy(): void {
    for (const action of ['kms:GenerateDataKey', 'kms:Decrypt'] as const) {
      const roles: IRole[] = BROKER_ROUTES.filter((route) =>
        FUNCTION_ACCESS[route].kms.includes(action),
      ).map((route) => this.functions[route].role);
      if (SWEEP_ACCESS.kms.includes(action)) roles.push(this.sweepFunction.role);
      this.key.addToResourcePolicy(
        new PolicyStatement({
          sid:
            action === 'kms:Decrypt' ? 'BrokerFunctionsDecrypt' : 'BrokerFunctionsGenerateDataKey',
          principals: [new AccountRootPrincipal()],
          actions: [action],
          resources: ['*'],
          conditions: {
            ...encryptionContextConditions(),
            ArnEquals: { 'aws:PrincipalArn': roles.map((role) => role.roleArn) },
          },
        }),
      );
    }
  }

  private acknowledgeNoAuthorizers(routes: Map<string, HttpRoute>): void {
    const reasons: Record<string, string> = {
      'ANY /login':
        '/login starts the OAuth Web Server Flow for a browser that has no credential yet; ' +
        'it only stores a one-time PKCE transaction and redirects to Salesforce.',
      'ANY /callback':
        '/callback is the OAuth redirect target; the request is authenticated by the ' +
        'one-time state, the transaction cookie and PKCE, which an authorizer cannot check.',
      'ANY /refresh':
        'The function authenticates the opaque session handle (cookie plus X-CSRF, or ' +
        'Bearer) against DynamoDB; a Lambda authorizer would repeat that lookup, and JWT/IAM ' +
        'authorizers do not apply to opaque handles.',
      'ANY /logout':
        'The function authenticates the opaque session handle itself (cookie plus X-CSRF, ' +
        'or Bearer); logout is idempotent and answers 204 to unknown handles.',
      'ANY /session':
        'The function authenticates the opaque session handle (cookie plus X-CSRF, or ' +
        'Bearer) against DynamoDB, like /refresh, and answers metadata only.',
      'ANY /token':
        '/token is the OAuth token endpoint of public native apps (RFC 8252): the request is ' +
        'authenticated by the one-time broker code and its PKCE verifier, which an ' +
        'authorizer cannot check.',
      $default:
        'The $default route only answers 404 not_found to paths that are not broker routes; ' +
        'its function has no permission and reads nothing from the request.',
    };
    for (const [routeKey, route] of routes) {
      const reason = reasons[routeKey];
      if (reason === undefined) throw new Error(`No acknowledgement reason for route ${routeKey}`);
      Validations.of(route).acknowledge({ id: 'AwsSolutions::AwsSolutions-APIG4', reason });
    }
  }
}

/** The statement id of each item kind's grant (one statement per kind and role). */
const ITEM_STATEMENT_IDS: Record<keyof typeof ITEM_PREFIX, string> = {
  session: 'SessionItems',
  login: 'LoginTransactionItems',
  connection: 'ConnectionPointerItems',
  code: 'BrokerCodeItems',
  ended: 'EndedSessionTombstones',
  alert: 'UpstreamAlertItems',
};

function encryptionContextConditions(): Record<string, Record<string, string | string[]>> {
  return {
    StringEquals: { 'kms:EncryptionContext:purpose': ENCRYPTION_PURPOSE },
    'ForAllValues:StringEquals': { 'kms:EncryptionContextKeys': ['purpose', 'session'] },
  };
}

function capitalize(word: string): string {
  return word.charAt(0).toUpperCase() + word.slice(1);
}
