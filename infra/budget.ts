/**
 * The timeout budget (README "The refresh path"), derived from one
 * number so the pieces cannot drift apart (defaults shown):
 *
 *   0 s        8 s              10 s           12 s                                29 s
 *   |-upstream-|                 |              |                                   |
 *   |  holder: Salesforce call, then commit ----| lease ends = function timeout      |
 *   |  waiter: polls ------------| 503          |                                   |
 *   |  (a cold start's init, up to 10 s, comes before all of this) -- API Gateway gives up
 *
 * - upstream timeout < lease, with 2 s left for the commit;
 * - lease = function timeout: a lease outlives its holder only when the holder is dead;
 * - waiters answer 503 2 s before their own function times out;
 * - function timeout + a cold start's init (<= 10 s) <= the integration timeout (29 s).
 *
 * `/callback` and `/logout` run on the same function timeout with one invocation deadline
 * 1 s before it (`INVOCATION_DEADLINE_MS`): every call they make (code exchange, secret
 * re-read, put and its read-back, the replaced session's revoke; logout's read, delete and
 * revoke) gets only what is left of it, so they always answer before Lambda kills them:
 *
 *   0 s                8 s        9.5 s        11 s   12 s
 *   |- code exchange --|          |            |      |
 *   |  (capped at what the deadline leaves after 1.5 s for the put and its read-back,
 *   |   so no upstream timeout can push the answer past the deadline)
 *   |  put, read-back, replaced session's end ---| answer by the deadline | killed
 */

/** The integration timeout we give API Gateway: the most CDK accepts (the service allows 30 s). */
export const API_GATEWAY_INTEGRATION_TIMEOUT_MS = 29_000;

/** Lambda's init phase may take up to 10 s; it runs before the function timeout starts. */
const MAX_INIT_MS = 10_000;

/** Time a holder needs after Salesforce answers: GenerateDataKey is already done, one commit. */
const COMMIT_MARGIN_MS = 2_000;

/** Time a waiter keeps to answer 503 before its function would be killed. */
const WAITER_MARGIN_MS = 2_000;

/** Time `/callback` and `/logout` keep after their deadline to answer before the kill. */
const ANSWER_MARGIN_MS = 1_000;

export interface TimeoutBudgetInput {
  /** Timeout of the functions that call Salesforce (`functionTimeoutSeconds`, default 12). */
  functionTimeoutSeconds?: number | undefined;
  /** Abort a Salesforce request after this long (`upstreamTimeoutMs`, default 8000). */
  upstreamTimeoutMs?: number | undefined;
}

export interface TimeoutBudget {
  functionTimeoutMs: number;
  /** `LEASE_MS`: equal to the function timeout. */
  leaseMs: number;
  /** `UPSTREAM_TIMEOUT_MS`. */
  upstreamTimeoutMs: number;
  /** `WAIT_BUDGET_MS`: the function timeout less a margin to answer. */
  waitBudgetMs: number;
  /** `INVOCATION_DEADLINE_MS` of `/callback` and `/logout`: the function timeout less 1 s. */
  invocationDeadlineMs: number;
}

export const DEFAULT_FUNCTION_TIMEOUT_SECONDS = 12;
export const DEFAULT_UPSTREAM_TIMEOUT_MS = 8_000;

/** Throws an error naming the setting when the numbers break the budget. */
export function timeoutBudget(input: TimeoutBudgetInput = {}): TimeoutBudget {
  const functionTimeoutSeconds = input.functionTimeoutSeconds ?? DEFAULT_FUNCTION_TIMEOUT_SECONDS;
  const upstreamTimeoutMs = input.upstreamTimeoutMs ?? DEFAULT_UPSTREAM_TIMEOUT_MS;
  const functionTimeoutMs = functionTimeoutSeconds * 1000;
  const maxFunctionTimeoutMs = API_GATEWAY_INTEGRATION_TIMEOUT_MS - MAX_INIT_MS;
  if (!Number.isInteger(functionTimeoutSeconds) || functionTimeoutSeconds < 5) {
    throw new Error(
      `"functionTimeoutSeconds" must be a whole number of seconds >= 5, got ${functionTimeoutSeconds}`,
    );
  }
  if (functionTimeoutMs > maxFunctionTimeoutMs) {
    throw new Error(
      `"functionTimeoutSeconds" must be at most ${maxFunctionTimeoutMs / 1000} (API Gateway's ` +
        `${API_GATEWAY_INTEGRATION_TIMEOUT_MS / 1000} s less a cold start's init), got ${functionTimeoutSeconds}`,
    );
  }
  if (!Number.isInteger(upstreamTimeoutMs) || upstreamTimeoutMs < 1000) {
    throw new Error(`"upstreamTimeoutMs" must be a whole number >= 1000, got ${upstreamTimeoutMs}`);
  }
  if (upstreamTimeoutMs + COMMIT_MARGIN_MS > functionTimeoutMs) {
    throw new Error(
      `"upstreamTimeoutMs" must leave ${COMMIT_MARGIN_MS} ms of the function timeout ` +
        `(${functionTimeoutMs} ms) for the commit, got ${upstreamTimeoutMs}`,
    );
  }
  const invocationDeadlineMs = functionTimeoutMs - ANSWER_MARGIN_MS;
  return {
    functionTimeoutMs,
    leaseMs: functionTimeoutMs,
    upstreamTimeoutMs,
    waitBudgetMs: functionTimeoutMs - WAITER_MARGIN_MS,
    invocationDeadlineMs,
  };
}
