import { runSweep, type SweepDependencies, type SweepReport } from '../broker/sweep.ts';
import type { FlushableMetrics } from '../http/route.ts';

/** What the sweep needs of the Lambda context: the time its invocation has left. */
export interface SweepContext {
  getRemainingTimeInMillis?(): number;
}

/** Without a Lambda context (the local interval runner): one run of at most this long. */
const DEFAULT_RUN_MS = 60_000;
/** Kept back besides one lease: the last tasks' commits, the metrics flush. */
const STOP_MARGIN_MS = 5_000;

/**
 * The scheduled sweep's handler (EventBridge Scheduler invokes it with an empty event):
 * one pass of `runSweep` that starts no new work once only a lease and a margin are left
 * of the invocation, so every refresh it started ends inside its lease and the function's
 * timeout. What it did not reach stays due for the next run.
 */
export function createSweepHandler(
  deps: SweepDependencies & { metrics: FlushableMetrics },
): (event?: unknown, context?: SweepContext) => Promise<SweepReport> {
  return async (_event, context) => {
    const remaining = context?.getRemainingTimeInMillis?.() ?? DEFAULT_RUN_MS;
    const stopAt = deps.clock.now() + remaining - deps.config.leaseMs - STOP_MARGIN_MS;
    try {
      return await runSweep(deps, { stopAt });
    } finally {
      deps.metrics.flush?.();
    }
  };
}
