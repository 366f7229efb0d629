/**
 * One Lambda execution environment, inside a `node:worker_threads` Worker started by
 * `bundle-runtime.ts`: imports a synthesized bundle (the init phase, with the function's
 * environment as `process.env`), then runs invocations one at a time, as Lambda does.
 *
 * Runs as plain Node (type stripping), not through the test transform: node: imports only,
 * erasable TypeScript only.
 *
 * Messages: the parent receives `ready` or `init-failed` once, then one `result` or
 * `failed` per `invoke` it sent.
 */
import { parentPort, workerData } from 'node:worker_threads';

export interface WorkerData {
  /** `file:` URL of the bundle (`index.mjs`). */
  bundleUrl: string;
  /** The exported handler's name (`handler` of `index.handler`). */
  exportName: string;
  functionName: string;
  memorySizeMb: number;
}

export interface InvokeMessage {
  type: 'invoke';
  event: unknown;
  requestId: string;
  /** Epoch ms at which the parent kills this worker (the function timeout). */
  deadline: number;
}

export type WorkerMessage =
  | { type: 'ready' }
  | { type: 'init-failed'; error: string }
  | { type: 'result'; requestId: string; result: unknown }
  | { type: 'failed'; requestId: string; error: string };

type Handler = (event: unknown, context: unknown) => Promise<unknown>;

const port = parentPort;
if (!port) throw new Error('bundle-worker.ts runs inside a Worker');
const data = workerData as WorkerData;

/** Waits until what was written to stdout so far has been handed to the parent. */
function flushStdout(): Promise<void> {
  return new Promise((resolve) => {
    process.stdout.write('', () => resolve());
  });
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

let handler: Handler;
try {
  const bundle = (await import(data.bundleUrl)) as Record<string, unknown>;
  const exported = bundle[data.exportName];
  if (typeof exported !== 'function') {
    throw new Error(`the bundle exports no function "${data.exportName}"`);
  }
  handler = exported as Handler;
  await flushStdout();
  port.postMessage({ type: 'ready' } satisfies WorkerMessage);
} catch (error) {
  await flushStdout();
  port.postMessage({ type: 'init-failed', error: describe(error) } satisfies WorkerMessage);
  throw error;
}

port.on('message', (message: InvokeMessage) => {
  if (message.type !== 'invoke') return;
  const context = {
    callbackWaitsForEmptyEventLoop: true,
    functionName: data.functionName,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:local:000000000000:function:${data.functionName}`,
    memoryLimitInMB: String(data.memorySizeMb),
    awsRequestId: message.requestId,
    logGroupName: `/aws/lambda/${data.functionName}`,
    logStreamName: 'local',
    getRemainingTimeInMillis: () => Math.max(0, message.deadline - Date.now()),
    done: () => {},
    fail: () => {},
    succeed: () => {},
  };
  handler(message.event, context).then(
    async (result) => {
      await flushStdout();
      port.postMessage({
        type: 'result',
        requestId: message.requestId,
        result,
      } satisfies WorkerMessage);
    },
    async (error: unknown) => {
      await flushStdout();
      port.postMessage({
        type: 'failed',
        requestId: message.requestId,
        error: describe(error),
      } satisfies WorkerMessage);
    },
  );
});
