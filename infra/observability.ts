import { Duration } from 'aws-cdk-lib';
import type { IHttpApi } from 'aws-cdk-lib/aws-apigatewayv2';
import {
  Alarm,
  AlarmStatusWidget,
  ComparisonOperator,
  Dashboard,
  GraphWidget,
  type IMetric,
  MathExpression,
  Metric,
  SingleValueWidget,
  TextWidget,
  TreatMissingData,
} from 'aws-cdk-lib/aws-cloudwatch';
import { SnsAction } from 'aws-cdk-lib/aws-cloudwatch-actions';
import type { IFunction } from 'aws-cdk-lib/aws-lambda';
import type { ITopic } from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';
import type { BrokerMetricName } from '../functions/shared/constants.ts';

/**
 * Metric names the functions emit in Embedded Metric Format (Powertools Metrics), with
 * the `service` dimension Powertools adds to every metric.
 */
export const BROKER_METRICS = {
  refreshCommitted: 'RefreshCommitted',
  refreshCoalesced: 'RefreshCoalesced',
  leaseWaitMs: 'LeaseWaitMs',
  upstreamLatencyMs: 'UpstreamLatencyMs',
  upstreamError: 'UpstreamError',
  reauthenticationRequired: 'ReauthenticationRequired',
  integrityError: 'IntegrityError',
  upstreamMisconfigured: 'UpstreamMisconfigured',
  upstreamInvalidResponse: 'UpstreamInvalidResponse',
  upstreamForbidden: 'UpstreamForbidden',
  rotationLost: 'RotationLost',
  revokeFailed: 'RevokeFailed',
  loginStarted: 'LoginStarted',
  loginCompleted: 'LoginCompleted',
  loginFailed: 'LoginFailed',
  invalidState: 'InvalidState',
  sessionEnded: 'SessionEnded',
} as const satisfies Record<string, BrokerMetricName>;

/**
 * Every log event the functions mark `alarm: true`, and the metric counted next to it,
 * on which an alarm below fires: a log line that says "alarm" always has an alarm behind
 * it. `test/infra/alarms.test.ts` scans `functions/` for alarmed log events and checks
 * this table and the synthesized alarms against them.
 */
export const ALARMED_LOG_EVENTS = {
  upstream_misconfigured: BROKER_METRICS.upstreamMisconfigured,
  // Logged with `alarm` only when the rejection is a configuration error (redirect_uri
  // mismatch and the like), not for an expired or replayed code.
  code_exchange_rejected: BROKER_METRICS.upstreamMisconfigured,
  upstream_invalid_response: BROKER_METRICS.upstreamInvalidResponse,
  upstream_forbidden: BROKER_METRICS.upstreamForbidden,
  rotation_lost: BROKER_METRICS.rotationLost,
  revoke_failed: BROKER_METRICS.revokeFailed,
  integrity_error: BROKER_METRICS.integrityError,
} as const;

export type AlarmedMetric = (typeof ALARMED_LOG_EVENTS)[keyof typeof ALARMED_LOG_EVENTS];

/**
 * One alarm per alarmed metric, on any occurrence in five minutes (`Sum >= 1`): each of
 * these is rare in a healthy deployment and needs a person. An alarm notifies when it
 * changes state, not per occurrence, so a burst of them is one message. The construct id
 * is the alarm's identity in CloudFormation; renaming one replaces the alarm.
 */
const EVENT_ALARMS: Record<AlarmedMetric, { id: string; description: string }> = {
  UpstreamMisconfigured: {
    id: 'UpstreamMisconfigured',
    description:
      'Salesforce rejected the connected app configuration (client credentials after a secret re-read, or the redirect URI at code exchange): every login or refresh fails. Check the secret and the connected app.',
  },
  UpstreamInvalidResponse: {
    id: 'UpstreamInvalidResponse',
    description:
      'A Salesforce token response failed verification (bad signature, foreign instance_url, missing refresh token): an attack, a broken proxy, or a changed connected app. See the upstream_invalid_response log events.',
  },
  UpstreamForbidden: {
    id: 'UpstreamForbidden',
    description:
      "Salesforce refused the broker itself (IP restrictions or login hours): users cannot log in or refresh. Lambda has no fixed egress IP, so set the connected app's IP Relaxation to relax IP restrictions; check the users' profile login hours.",
  },
  RotationLost: {
    id: 'RotationLost',
    description:
      'Salesforce rotated a refresh token but the broker could not store the new one: that session is lost (its user must log in again). Check DynamoDB errors in the refresh logs.',
  },
  // Any occurrence, not a rate: every failed revocation leaves a refresh token valid at
  // Salesforce that no session holds any more (until Salesforce's own expiry policy ends
  // it). It cannot be retried later, as the token is gone from the broker; a person
  // revokes it in Salesforce (connected app OAuth usage) or accepts it.
  RevokeFailed: {
    id: 'RevokeFailed',
    description:
      'A refresh token the broker let go of (logout, replaced or orphaned session) could not be revoked at Salesforce and stays valid until it expires. Revoke it in Salesforce (Connected Apps OAuth Usage) if needed; see the revoke_failed log events.',
  },
  IntegrityError: {
    id: 'IntegrityErrors',
    description:
      'A stored session failed to decrypt or parse (copied or tampered item, or a bad write). Investigate before it spreads.',
  },
};

/** Values of the `class` dimension of `UpstreamError`. */
export const UPSTREAM_ERROR_CLASSES = [
  'unavailable',
  'invalid_grant',
  'invalid_client',
  'concurrent',
  'invalid_response',
] as const;

export interface BrokerObservabilityProps {
  namespace: string;
  serviceName: string;
  api: IHttpApi;
  functions: Record<string, IFunction>;
  topic: ITopic;
  /** Percentage of 5xx answers over 5 minutes that raises the alarm (default 5). */
  serverErrorRatePercent?: number;
}

/**
 * Alarms on what needs a person, and one dashboard for the rest:
 * - `ServerErrorRate`: 5xx answers (503 while Salesforce is down, 502 misconfiguration,
 *   500 bugs) above 5 % of at least 20 requests, in 2 of 3 five-minute periods;
 * - one alarm on any occurrence of each metric in {@link ALARMED_LOG_EVENTS}
 *   (`UpstreamMisconfigured`, `UpstreamInvalidResponse`, `UpstreamForbidden`,
 *   `RotationLost`, `RevokeFailed`, `IntegrityErrors`), described in `EVENT_ALARMS`;
 * - `Throttles`: Lambda refused invocations (account or reserved concurrency exhausted).
 */
export class BrokerObservability extends Construct {
  readonly alarms: Alarm[];
  readonly dashboard: Dashboard;

  constructor(scope: Construct, id: string, props: BrokerObservabilityProps) {
    super(scope, id);
    const period = Duration.minutes(5);
    const broker = (metricName: string, statistic = 'Sum', extra: Record<string, string> = {}) =>
      new Metric({
        namespace: props.namespace,
        metricName,
        dimensionsMap: { service: props.serviceName, ...extra },
        statistic,
        period,
      });

    const requests = props.api.metricCount({ period, statistic: 'Sum' });
    const serverErrors = props.api.metricServerError({ period, statistic: 'Sum' });
    const serverErrorRate = new MathExpression({
      label: '5xx %',
      expression: 'IF(requests >= 20, 100 * errors / requests, 0)',
      usingMetrics: { requests, errors: serverErrors },
      period,
    });
    const functions = Object.entries(props.functions);
    const throttles = new MathExpression({
      label: 'Lambda throttles',
      expression: functions.map((_, index) => `t${index}`).join(' + '),
      usingMetrics: Object.fromEntries(
        functions.map(([, fn], index) => [`t${index}`, fn.metricThrottles({ period })]),
      ),
      period,
    });

    const action = new SnsAction(props.topic);
    const alarm = (
      name: string,
      metric: IMetric,
      threshold: number,
      description: string,
      evaluation = { evaluationPeriods: 1, datapointsToAlarm: 1 },
    ) => {
      const created = new Alarm(this, name, {
        alarmDescription: description,
        metric,
        threshold,
        comparisonOperator: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: TreatMissingData.NOT_BREACHING,
        ...evaluation,
      });
      created.addAlarmAction(action);
      created.addOkAction(action);
      return created;
    };

    const rate = props.serverErrorRatePercent ?? 5;
    this.alarms = [
      alarm(
        'ServerErrorRate',
        serverErrorRate,
        rate,
        `More than ${rate} % of broker requests answered 5xx (Salesforce unavailable, misconfiguration or a bug). See the function logs.`,
        { evaluationPeriods: 3, datapointsToAlarm: 2 },
      ),
      ...[...new Set(Object.values(ALARMED_LOG_EVENTS))].map((metricName) =>
        alarm(
          EVENT_ALARMS[metricName].id,
          broker(metricName),
          1,
          EVENT_ALARMS[metricName].description,
        ),
      ),
      alarm(
        'Throttles',
        throttles,
        1,
        'Lambda throttled broker invocations: raise the account concurrency or lower API throttling.',
      ),
    ];

    const graph = (title: string, left: IMetric[], right: IMetric[] = []) =>
      new GraphWidget({ title, left, right, width: 12, height: 6 });
    const upstreamLatency = (statistic: string) =>
      broker(BROKER_METRICS.upstreamLatencyMs, statistic).with({ label: `upstream ${statistic}` });
    const leaseWait = (statistic: string) =>
      broker(BROKER_METRICS.leaseWaitMs, statistic).with({ label: `lease wait ${statistic}` });

    this.dashboard = new Dashboard(this, 'Dashboard', {
      defaultInterval: Duration.hours(12),
    });
    this.dashboard.addWidgets(
      new TextWidget({
        markdown: `# Token broker \`${props.serviceName}\`\nNamespace \`${props.namespace}\`. Alarms go to the alarm topic.`,
        width: 24,
        height: 2,
      }),
      new AlarmStatusWidget({ alarms: this.alarms, width: 24, height: 3 }),
      graph(
        'API requests and errors',
        [requests.with({ label: 'requests' })],
        [
          props.api.metricClientError({ period, statistic: 'Sum' }).with({ label: '4xx' }),
          serverErrors.with({ label: '5xx' }),
        ],
      ),
      graph('API latency', [
        props.api.metricLatency({ period, statistic: 'p50' }),
        props.api.metricLatency({ period, statistic: 'p99' }),
        props.api.metricIntegrationLatency({ period, statistic: 'p99' }),
      ]),
      graph('Refreshes', [
        broker(BROKER_METRICS.refreshCommitted).with({ label: 'committed (one Salesforce call)' }),
        broker(BROKER_METRICS.refreshCoalesced).with({ label: 'coalesced callers' }),
        broker(BROKER_METRICS.reauthenticationRequired).with({
          label: 're-authentication required',
        }),
      ]),
      graph('Logins and logouts', [
        broker(BROKER_METRICS.loginStarted).with({ label: 'logins started' }),
        broker(BROKER_METRICS.loginCompleted).with({ label: 'logins completed' }),
        broker(BROKER_METRICS.loginFailed).with({ label: 'logins failed' }),
        broker(BROKER_METRICS.invalidState).with({ label: 'callbacks with a bad state' }),
        broker(BROKER_METRICS.sessionEnded).with({ label: 'sessions ended (logout, replaced)' }),
      ]),
      graph('Upstream latency and lease wait (ms)', [
        upstreamLatency('p50'),
        upstreamLatency('p99'),
        leaseWait('p50'),
        leaseWait('p99'),
      ]),
      graph(
        'Upstream errors by class',
        UPSTREAM_ERROR_CLASSES.map((errorClass) =>
          broker(BROKER_METRICS.upstreamError, 'Sum', { class: errorClass }).with({
            label: errorClass,
          }),
        ),
      ),
      graph(
        'Needs attention',
        [...new Set(Object.values(ALARMED_LOG_EVENTS))].map((metricName) =>
          broker(metricName).with({ label: metricName }),
        ),
      ),
      graph(
        'Function duration p99 (ms)',
        functions.map(([name, fn]) =>
          fn.metricDuration({ period, statistic: 'p99' }).with({ label: name }),
        ),
      ),
      graph(
        'Function errors and throttles',
        functions.map(([name, fn]) =>
          fn.metricErrors({ period }).with({ label: `${name} errors` }),
        ),
        [throttles],
      ),
      new SingleValueWidget({
        title: 'Concurrent executions (max)',
        metrics: functions.map(([name, fn]) =>
          fn.metric('ConcurrentExecutions', { period, statistic: 'Maximum' }).with({ label: name }),
        ),
        width: 24,
        height: 4,
      }),
    );
  }
}
