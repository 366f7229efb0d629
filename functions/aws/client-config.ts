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
 * `requestTimeout` runs from sending the request until the response headers arrive; a body
 * that trickles in after them is bounded only by an abort signal. Worst case per call:
 * 3 attempts of 1 s plus the SDK's backoff, about 3.5 s; where the domain has a deadline
 * (the time left in a lease or an invocation) it also passes an abort signal, which covers
 * the body too.
 * DynamoDB, KMS and Secrets Manager answer in single-digit milliseconds inside a region, so
 * 1 s is two orders of magnitude of headroom, and a cold TLS connect fits in it.
 * @see https://docs.aws.amazon.com/sdk-for-javascript/v3/developer-guide/node-configuring-maxsockets.html
 * @see https://github.com/smithy-lang/smithy-typescript/blob/main/packages/node-http-handler/README.md
 */
export function awsClientConfig(env: Readonly<Record<string, string | undefined>> = process.env) {
  return {
    maxAttempts: 3,
    requestHandler: {
      connectionTimeout: 1_000,
      requestTimeout: requestTimeoutMs(env.AWS_SDK_REQUEST_TIMEOUT_MS),
      throwOnRequestTimeout: true,
    },
  };
}

/**
 * Deployments use the default. `AWS_SDK_REQUEST_TIMEOUT_MS` exists for one case: the soak
 * run, which serves hundreds of callers and dynalite from one process on a loaded machine,
 * where a slow event loop, not a stalled network, would trip the 1 s.
 */
function requestTimeoutMs(raw: string | undefined): number {
  if (raw === undefined || raw.trim() === '') return 1_000;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 100 || value > 10_000) {
    throw new Error('AWS_SDK_REQUEST_TIMEOUT_MS must be a whole number from 100 to 10000');
  }
  return value;
}
