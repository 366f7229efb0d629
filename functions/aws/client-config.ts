/**
 * Configuration of every AWS SDK client the functions build, in one place.
 *
 * Without timeouts an SDK call has no bound but the function timeout: one stalled commit or
 * `GenerateDataKey` would outlive the refresh lease, the next caller would take the lease
 * and send the rotated-out refresh token, and Salesforce's reuse detection would end the
 * session. So each attempt gets a connect and a request timeout, and the SDK retries a
 * timed-out attempt like a 5xx. `requestTimeout` alone only logs a warning in
 * `@smithy/node-http-handler`; `throwOnRequestTimeout` makes it fail the attempt.
 *
 * Worst case per call: 3 attempts of 1 s plus the SDK's backoff, about 3.5 s; where the
 * domain has a tighter deadline (the time left in a lease) it also passes an abort signal.
 * DynamoDB, KMS and Secrets Manager answer in single-digit milliseconds inside a region, so
 * 1 s is two orders of magnitude of headroom, and a cold TLS connect fits in it.
 * @see https://docs.aws.amazon.com/sdk-for-javascript/v3/developer-guide/node-configuring-maxsockets.html
 * @see https://github.com/smithy-lang/smithy-typescript/blob/main/packages/node-http-handler/README.md
 */
export const AWS_CLIENT_CONFIG = {
  maxAttempts: 3,
  requestHandler: {
    connectionTimeout: 1_000,
    requestTimeout: 1_000,
    throwOnRequestTimeout: true,
  },
} as const;
