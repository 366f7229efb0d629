import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type { Log, MetricSink } from '../broker/ports.ts';

/**
 * Structured JSON logs (Powertools Logger). Call sites pass only safe attributes: hashes
 * of session keys, error classes, counts. Never a token, code, verifier, secret, cookie
 * or handle.
 */
export function createLogger(serviceName = 'token-broker'): Log {
  const logger = new Logger({ serviceName: process.env.POWERTOOLS_SERVICE_NAME ?? serviceName });
  const write =
    (level: 'debug' | 'info' | 'warn' | 'error') =>
    (message: string, attributes?: Record<string, unknown>) =>
      attributes ? logger[level](message, attributes) : logger[level](message);
  return { debug: write('debug'), info: write('info'), warn: write('warn'), error: write('error') };
}

/**
 * A view of `log` that adds `attributes` (the request ids) to every entry. Per request,
 * not global state, so concurrent requests in one process (the local server) never mix.
 */
export function withAttributes(log: Log, attributes: Record<string, unknown>): Log {
  return {
    debug: (message, extra) => log.debug(message, { ...attributes, ...extra }),
    info: (message, extra) => log.info(message, { ...attributes, ...extra }),
    warn: (message, extra) => log.warn(message, { ...attributes, ...extra }),
    error: (message, extra) => log.error(message, { ...attributes, ...extra }),
  };
}

/** CloudWatch Embedded Metric Format through Powertools Metrics, flushed per invocation. */
export class EmfMetrics implements MetricSink {
  readonly metrics: Metrics;
  /** Whether anything waits in the buffer: Powertools warns on every empty flush. */
  #pending = false;

  constructor(serviceName = 'token-broker') {
    this.metrics = new Metrics({
      namespace: process.env.POWERTOOLS_METRICS_NAMESPACE ?? 'TokenBroker',
      serviceName: process.env.POWERTOOLS_SERVICE_NAME ?? serviceName,
    });
  }

  count(name: string, value = 1, dimensions?: Record<string, string>): void {
    if (dimensions) {
      const single = this.metrics.singleMetric();
      for (const [key, dimension] of Object.entries(dimensions))
        single.addDimension(key, dimension);
      single.addMetric(name, MetricUnit.Count, value);
      return;
    }
    this.metrics.addMetric(name, MetricUnit.Count, value);
    this.#pending = true;
  }

  timing(name: string, milliseconds: number): void {
    this.metrics.addMetric(name, MetricUnit.Milliseconds, milliseconds);
    this.#pending = true;
  }

  flush(): void {
    if (!this.#pending) return;
    this.#pending = false;
    this.metrics.publishStoredMetrics();
  }
}
