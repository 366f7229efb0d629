import { TemporarilyUnavailableError } from '../broker/errors.ts';

/**
 * Turns an AWS SDK (or network) failure into a domain error, keeping it as `cause`.
 * Throttling, 5xx and network failures are transient; anything else (missing table,
 * access denied, disabled key) is an operator problem that still must not lose data, so
 * it is also answered with 503 while the cause is logged.
 */
export function awsUnavailable(service: string, error: unknown): TemporarilyUnavailableError {
  const name = error instanceof Error ? error.name : 'Error';
  // DynamoDB throttles with ProvisionedThroughputExceededException, which names neither.
  const retryAfter = /Throttl|LimitExceeded|TooManyRequests|ProvisionedThroughput/i.test(name)
    ? 2
    : 1;
  return new TemporarilyUnavailableError(
    `${service} is temporarily unavailable (${name}).`,
    retryAfter,
    { cause: error },
  );
}
