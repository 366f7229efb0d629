/**
 * Names both sides must agree on: the functions write them, the CDK construct grants,
 * conditions and alarms on them. No imports, so `infra/` and every part of `functions/`
 * can use it without pulling code into a bundle.
 */

/** The `purpose` member of every KMS encryption context; IAM and the key policy condition on it. */
export const ENCRYPTION_PURPOSE = 'salesforce-token';

/**
 * Partition-key prefixes of the item kinds in the one table; IAM limits each function to
 * the kinds it touches with `dynamodb:LeadingKeys`. `connection#<id>` points to the session
 * item of a connection; `code#<hash>` is a one-time broker code of the handoff;
 * `ended#<session key>` is the token-free tombstone of a session Salesforce or the service
 * API ended, so its handle answers `reauthentication_required`; `alert#<kind>#<app>` is
 * one operator alert per kind and connected app (`Upstream Misconfigured`).
 */
export const ITEM_PREFIX = {
  session: 'session#',
  login: 'login#',
  connection: 'connection#',
  code: 'code#',
  ended: 'ended#',
  alert: 'alert#',
} as const;

/** The `source` of every event when no service name is set (`POWERTOOLS_SERVICE_NAME`). */
export const DEFAULT_EVENT_SOURCE = 'token-broker';

/** The `detail-type`s the broker publishes (README "Events"). */
export const EVENT_DETAIL_TYPES = {
  created: 'Connection Created',
  ended: 'Connection Ended',
  failing: 'Connection Refresh Failing',
  recovered: 'Connection Recovered',
  misconfigured: 'Upstream Misconfigured',
} as const;

/**
 * The index that lists connections by organization: partition key `orgKey`
 * (`org#<organization id>`), sort key `userKey` (`<user id>#<created at>#<connection id>`).
 * Only session items carry these attributes (a sparse index).
 */
export const CONNECTIONS_BY_ORG_INDEX = {
  name: 'connectionsByOrganization',
  partitionKey: 'orgKey',
  sortKey: 'userKey',
  partitionPrefix: 'org#',
  /** The metadata a listing answers with; never the ciphertext or the data key. */
  projected: [
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
} as const;

/**
 * The index the scheduled sweep (README "Keep-alive and expiry") finds due sessions by,
 * never a scan: partition key `sweepShard` (`sweep#0` .. `sweep#<shards - 1>`, from the
 * session key, so no one partition takes every write), sort key `sweepAt` (epoch ms: the
 * earliest of the keep-alive due time, the idle expiry and the absolute expiry). Sparse:
 * only session items written since the index exists carry its keys. It projects the few
 * numbers the sweep decides on, never the sealed tokens.
 */
export const SWEEP_INDEX = {
  name: 'sweepDue',
  partitionKey: 'sweepShard',
  sortKey: 'sweepAt',
  partitionPrefix: 'sweep#',
  shards: 4,
  projected: ['version', 'committedAt', 'idleExpiresAt', 'absoluteExpiresAt'],
} as const;

/**
 * Every metric the functions emit (CloudWatch Embedded Metric Format, with the `service`
 * dimension). `MetricSink` takes only these names, and `test/infra/metrics.test.ts` checks
 * that the dashboard draws each of them.
 */
export const BROKER_METRIC_NAMES = [
  'RefreshCommitted',
  'RefreshCoalesced',
  'LeaseWaitMs',
  'UpstreamLatencyMs',
  'UpstreamError',
  'ReauthenticationRequired',
  'IntegrityError',
  'UpstreamMisconfigured',
  'UpstreamInvalidResponse',
  'UpstreamForbidden',
  'RotationLost',
  'RevokeFailed',
  'LoginStarted',
  'LoginCompleted',
  'LoginFailed',
  'InvalidState',
  'SessionEnded',
  'KeptAlive',
  'KeepAliveFailed',
  'ExpiredRevoked',
  'IntrospectionFailed',
] as const;

export type BrokerMetricName = (typeof BROKER_METRIC_NAMES)[number];

/**
 * The service API's routes (README "Backend jobs: the service API"): API Gateway route
 * keys, all served by the one `service` function, all with `AWS_IAM` authorization.
 * `TokenBroker.grantServiceAccess` grants `execute-api:Invoke` on exactly these.
 */
export const SERVICE_ROUTE_KEYS = [
  'POST /connections/{connection_id}/token',
  'GET /connections/{connection_id}',
  'DELETE /connections/{connection_id}',
  'GET /connections',
  'DELETE /connections',
] as const;

export type ServiceRouteKey = (typeof SERVICE_ROUTE_KEYS)[number];
