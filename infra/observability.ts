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
  keptAlive: 'KeptAlive',
  keepAliveFailed: 'KeepAliveFailed',
  expiredRevoked: 'ExpiredRevoked',
  introspectionFailed: 'IntrospectionFailed',
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
  private readonly props: BrokerObservabilityProps;
  private readonly functions: [string, IFunction][];
  private readonly action: SnsAction;
  private readonly requests: Metric;
  private readonly serverErrors: Metric;
  private readonly throttles: IMetric;

  constructor(scope: Construct, id: string, props: BrokerObservabilityProps) {
    super(scope, id);
    this.props = props;
    this.functions = Object.entries(props.functions);
    this.action = new SnsAction(props.topic);
    this.requests = props.api.metricCount({ period: PERIOD, statistic: 'Sum' });
    this.serverErrors = props.api.metricServerError({ period: PERIOD, statistic: 'Sum' });
    this.throttles = new MathExpression({
      label: 'Lambda throttles',
      expression: this.functions.map((_, index) => `t${index}`).join(' + '),
      usingMetrics: Object.fromEntries(
        this.functions.map(([, fn], index) => [
          `t${index}`,
          fn.metricThrottles({ period: PERIOD }),
        ]),
      ),
      period: PERIOD,
    });
    this.alarms = this.createAlarms();
    this.dashboard = this.createDashboard();
  }

  /** A metric the functions emit, with the deployment's `service` dimension. */
  private brokerMetric(metricName: string, statistic = 'Sum', extra: Record<string, string> = {}) {
    return new Metric({
      namespace: this.props.namespace,
      metricName,
      dimensionsMap: { service: this.props.serviceName, ...extra },
      statistic,
      period: PERIOD,
    });
  }

  /** An alarm that notifies the topic when it fires and again when it clears. */
  private alarm(
    name: string,
    metric: IMetric,
    threshold: number,
    description: string,
    evaluation = { evaluationPeriods: 1, datapointsToAlarm: 1 },
  ): Alarm {
    const created = new Alarm(this, name, {
      alarmDescription: description,
      metric,
      threshold,
      comparisonOperator: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      treatMissingData: TreatMissingData.NOT_BREACHING,
      ...evaluation,
    });
    created.addAlarmAction(this.action);
    created.addOkAction(this.action);
    return created;
  }

  private createAlarms(): Alarm[] {
    const rate = this.props.serverErrorRatePercent ?? 5;
    const serverErrorRate = new MathExpression({
      label: '5xx %',
      expression: 'IF(requests >= 20, 100 * errors / requests, 0)',
      usingMetrics: { requests: this.requests, errors: this.serverErrors },
      period: PERIOD,
    });
    return [
      this.alarm(
        'ServerErrorRate',
        serverErrorRate,
        rate,
        `More than ${rate} % of broker requests answered 5xx (Salesforce unavailable, misconfiguration or a bug). See the function logs.`,
        { evaluationPeriods: 3, datapointsToAlarm: 2 },
      ),
      ...alarmedMetrics().map((metricName) =>
        this.alarm(
          EVENT_ALARMS[metricName].id,
          this.brokerMetric(metricName),
          1,
          EVENT_ALARMS[metricName].description,
        ),
      ),
      this.alarm(
        'KeepAliveFailureRate',
        this.keepAliveFailureRate(),
        0.01,
        'More than 1 % of the sweep keep-alive refreshes failed: connections nobody uses may reach Salesforce 30-day idle limit. The failed ones stay due and are retried next run; see the sweep function logs (keep_alive_failed).',
      ),
      this.alarm(
        'Throttles',
        this.throttles,
        1,
        'Lambda throttled broker invocations: raise the account concurrency or lower API throttling.',
      ),
    ];
  }

  /** KeepAliveFailed / (KeptAlive + KeepAliveFailed) over a day: the sweep runs once a day. */
  private keepAliveFailureRate(): MathExpression {
    const day = Duration.days(1);
    return new MathExpression({
      label: 'keep-alive failure ratio',
      expression: 'IF(kept + failed > 0, failed / (kept + failed), 0)',
      usingMetrics: {
        kept: this.brokerMetric(BROKER_METRICS.keptAlive).with({ period: day }),
        failed: this.brokerMetric(BROKER_METRICS.keepAliveFailed).with({ period: day }),
      },
      period: day,
    });
  }

  private createDashboard(): Dashboard {
    const dashboard = new Dashboard(this, 'Dashboard', { defaultInterval: Duration.hours(12) });
    dashboard.addWidgets(
      new TextWidget({
        markdown: `# Token broker \`${this.props.serviceName}\`\nNamespace \`${this.props.namespace}\`. Alarms go to the alarm topic.`,
        width: 24,
        height: 2,
      }),
      new AlarmStatusWidget({ alarms: this.alarms, width: 24, height: 3 }),
      ...this.apiWidgets(),
      ...this.brokerWidgets(),
      ...this.functionWidgets(),
    );
    return dashboard;
  }

  /** Requests, errors and latency as API Gateway sees them. */
  private apiWidgets(): GraphWidget[] {
    const { api } = this.props;
    return [
      graph(
        'API requests and errors',
        [this.requests.with({ label: 'requests' })],
        [
          api.metricClientError({ period: PERIOD, statistic: 'Sum' }).with({ label: '4xx' }),
          this.serverErrors.with({ label: '5xx' }),
        ],
      ),
      graph('API latency', [
        api.metricLatency({ period: PERIOD, statistic: 'p50' }),
        api.metricLatency({ period: PERIOD, statistic: 'p99' }),
        api.metricIntegrationLatency({ period: PERIOD, statistic: 'p99' }),
      ]),
    ];
  }

  /** The metrics the functions emit (`BROKER_METRICS`), every one of them on a graph. */
  private brokerWidgets(): GraphWidget[] {
    const metric = (name: string, label: string) => this.brokerMetric(name).with({ label });
    const latency = (name: string, label: string, statistic: string) =>
      this.brokerMetric(name, statistic).with({ label: `${label} ${statistic}` });
    return [
      graph('Refreshes', [
        metric(BROKER_METRICS.refreshCommitted, 'committed (one Salesforce call)'),
        metric(BROKER_METRICS.refreshCoalesced, 'coalesced callers'),
        metric(BROKER_METRICS.reauthenticationRequired, 're-authentication required'),
        metric(BROKER_METRICS.introspectionFailed, 'introspections failed (no expires_at)'),
      ]),
      graph('Logins and logouts', [
        metric(BROKER_METRICS.loginStarted, 'logins started'),
        metric(BROKER_METRICS.loginCompleted, 'logins completed'),
        metric(BROKER_METRICS.loginFailed, 'logins failed'),
        metric(BROKER_METRICS.invalidState, 'callbacks with a bad state'),
        metric(BROKER_METRICS.sessionEnded, 'sessions ended (logout, replaced)'),
      ]),
      graph('Upstream latency and lease wait (ms)', [
        latency(BROKER_METRICS.upstreamLatencyMs, 'upstream', 'p50'),
        latency(BROKER_METRICS.upstreamLatencyMs, 'upstream', 'p99'),
        latency(BROKER_METRICS.leaseWaitMs, 'lease wait', 'p50'),
        latency(BROKER_METRICS.leaseWaitMs, 'lease wait', 'p99'),
      ]),
      graph(
        'Upstream errors by class',
        UPSTREAM_ERROR_CLASSES.map((errorClass) =>
          this.brokerMetric(BROKER_METRICS.upstreamError, 'Sum', { class: errorClass }).with({
            label: errorClass,
          }),
        ),
      ),
      graph('Keep-alive and expiry (sweep)', [
        metric(BROKER_METRICS.keptAlive, 'kept alive'),
        metric(BROKER_METRICS.keepAliveFailed, 'keep-alive failed'),
        metric(BROKER_METRICS.expiredRevoked, 'expired and revoked'),
      ]),
      graph(
        'Needs attention',
        alarmedMetrics().map((metricName) => metric(metricName, metricName)),
      ),
    ];
  }

  /** Duration, errors, throttles and concurrency per function. */
  private functionWidgets(): (GraphWidget | SingleValueWidget)[] {
    const { functions } = this;
    return [
      graph(
        'Function duration p99 (ms)',
        functions.map(([name, fn]) =>
          fn.metricDuration({ period: PERIOD, statistic: 'p99' }).with({ label: name }),
        ),
      ),
      graph(
        'Function errors and throttles',
        functions.map(([name, fn]) =>
          fn.metricErrors({ period: PERIOD }).with({ label: `${name} errors` }),
        ),
        [this.throttles],
      ),
      new SingleValueWidget({
        title: 'Concurrent executions (max)',
        metrics: functions.map(([name, fn]) =>
          fn
            .metric('ConcurrentExecutions', { period: PERIOD, statistic: 'Maximum' })
            .with({ label: name }),
        ),
        width: 24,
        height: 4,
      }),
    ];
  }
}

const PERIOD = Duration.minutes(5);

/** Each alarmed metric once (two log events count the same metric). */
function alarmedMetrics(): AlarmedMetric[] {
  return [...new Set(Object.values(ALARMED_LOG_EVENTS))];
}

function graph(title: string, left: IMetric[], right: IMetric[] = []): GraphWidget {
  return new GraphWidget({ title, left, right, width: 12, height: 6 });
}
