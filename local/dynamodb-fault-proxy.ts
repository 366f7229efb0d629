/**
 * A small HTTP proxy in front of dynalite that fails chosen DynamoDB requests the way the
 * service does, for fault tests and the soak run. Requests are matched by operation
 * (`X-Amz-Target: DynamoDB_20120810.<Operation>`) and, optionally, by a substring of the
 * JSON body (e.g. a `ConditionExpression`, which tells the lease acquire, the fenced commit
 * and the release apart: all three are `UpdateItem`).
 *
 * Fault kinds and what the client sees (AWS JSON 1.0 error documents):
 * - `throughput`: 400 `ProvisionedThroughputExceededException` (the SDK retries, throttling backoff)
 * - `throttle`:   400 `ThrottlingException` (the SDK retries, throttling backoff)
 * - `internal`:   500 `InternalServerError`, the request is not applied (the SDK retries)
 * - `apply-then-internal`: the request IS applied by dynalite, then answered with 500, as
 *   DynamoDB documents for item operations ("may or may not have succeeded"); the SDK's
 *   retry then meets its own write
 * - `drop`:       the connection is closed without an answer (a network error)
 * - `delay`:      the request is forwarded after `ms`
 * - `trickle`:    the request is applied, and the answer's headers are sent at once but its
 *   body only over `ms`, a space (valid leading JSON whitespace) every 200 ms before the real
 *   body: the connection is never idle, so a socket idle timeout (the SDK's
 *   `requestTimeout`) never fires, and only a deadline on the whole call bounds it
 *
 * The AWS SDK retries throttling, 5xx and network errors itself (the runtime uses
 * `maxAttempts: 3`), so a fault must be injected with `times >= 3` to reach the caller.
 *
 * Only node:http; never writes to stdout/stderr.
 */
import { randomUUID } from 'node:crypto';
import {
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';

export type DynamoDbFaultKind =
  | 'throughput'
  | 'throttle'
  | 'internal'
  | 'apply-then-internal'
  | 'drop'
  | 'delay'
  | 'trickle';

export interface DynamoDbFault {
  /** `GetItem`, `UpdateItem`, `PutItem`, `DeleteItem`, ... or `*` for any operation. */
  operation: string;
  kind: DynamoDbFaultKind;
  /** Only requests whose raw JSON body contains this text. */
  match?: string;
  /** Let this many matching requests through first: `skip: 2` fails the 3rd one. */
  skip?: number;
  /** How many matching requests fail (default 1; `Infinity` until cleared). */
  times?: number;
  /** Delay before answering (or forwarding, for `delay`), in ms. */
  ms?: number;
}

export interface DynamoDbFaultProxy {
  readonly url: string;
  /** Requests seen, per operation. */
  readonly calls: Record<string, number>;
  /** Requests answered with an injected fault, per operation. */
  readonly faulted: Record<string, number>;
  inject(fault: DynamoDbFault): void;
  /** Faults still queued (not yet used up). */
  pending(): number;
  /** Drops the queued faults and zeroes `faulted`, so each test counts only its own. */
  clearFaults(): void;
  close(): Promise<void>;
}

interface QueuedFault {
  readonly fault: DynamoDbFault;
  skip: number;
  remaining: number;
}

const ERROR_PREFIX = 'com.amazonaws.dynamodb.v20120810#';
const TRICKLE_INTERVAL_MS = 200;
const CONTENT_TYPE = 'application/x-amz-json-1.0';
const MAX_BODY_BYTES = 16 * 1024 * 1024;

const ERRORS: Record<
  Exclude<DynamoDbFaultKind, 'drop' | 'delay' | 'trickle'>,
  { status: number; type: string; message: string }
> = {
  throughput: {
    status: 400,
    type: 'ProvisionedThroughputExceededException',
    message:
      'The level of configured provisioned throughput for the table was exceeded. ' +
      'Consider increasing your provisioning level with the UpdateTable API.',
  },
  throttle: {
    status: 400,
    type: 'ThrottlingException',
    message: 'Rate of requests exceeds the allowed throughput.',
  },
  internal: { status: 500, type: 'InternalServerError', message: 'Internal server error' },
  'apply-then-internal': {
    status: 500,
    type: 'InternalServerError',
    message: 'Internal server error',
  },
};

/** Starts the proxy on loopback, forwarding to `target` (dynalite's URL). */
export async function startDynamoDbFaultProxy(options: {
  target: string;
  host?: string;
  port?: number;
}): Promise<DynamoDbFaultProxy> {
  const target = new URL(options.target);
  const calls: Record<string, number> = {};
  const faulted: Record<string, number> = {};
  let queue: QueuedFault[] = [];
  const timers = new Set<NodeJS.Timeout>();
  let closed = false;

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      if (ms <= 0 || closed) return resolve();
      const timer = setTimeout(() => {
        timers.delete(timer);
        resolve();
      }, ms);
      timers.add(timer);
    });

  const take = (operation: string, body: string): DynamoDbFault | undefined => {
    for (const entry of queue) {
      const { fault } = entry;
      if (fault.operation !== '*' && fault.operation !== operation) continue;
      if (fault.match !== undefined && !body.includes(fault.match)) continue;
      if (entry.skip > 0) {
        entry.skip--;
        return undefined;
      }
      entry.remaining--;
      if (entry.remaining <= 0) queue = queue.filter((other) => other !== entry);
      return fault;
    }
    return undefined;
  };

  const forward = (request: IncomingMessage, body: Buffer) =>
    new Promise<{ status: number; headers: OutgoingHttpHeaders; body: Buffer }>(
      (resolve, reject) => {
        const headers: OutgoingHttpHeaders = { ...request.headers, host: target.host };
        headers['content-length'] = body.length;
        const outgoing = httpRequest(
          {
            host: target.hostname,
            port: target.port,
            method: request.method,
            path: request.url,
            headers,
          },
          (answer) => {
            const chunks: Buffer[] = [];
            answer.on('data', (chunk: Buffer) => chunks.push(chunk));
            answer.on('end', () =>
              resolve({
                status: answer.statusCode ?? 502,
                headers: answer.headers,
                body: Buffer.concat(chunks),
              }),
            );
            answer.on('error', reject);
          },
        );
        outgoing.on('error', reject);
        outgoing.end(body);
      },
    );

  const trickle = async (
    response: ServerResponse,
    answer: { status: number; headers: OutgoingHttpHeaders; body: Buffer },
    ms: number,
  ) => {
    const padding = Math.max(1, Math.ceil(ms / TRICKLE_INTERVAL_MS));
    // The body changes, so its checksum header cannot stay; the SDK checks it only if sent.
    const { 'x-amz-crc32': _crc, ...headers } = answer.headers;
    response.writeHead(answer.status, {
      ...headers,
      'content-length': padding + answer.body.length,
    });
    for (let sent = 0; sent < padding && !closed && !response.destroyed; sent++) {
      response.write(' ');
      await sleep(TRICKLE_INTERVAL_MS);
    }
    response.end(answer.body);
  };

  const sendError = (response: ServerResponse, kind: keyof typeof ERRORS) => {
    const error = ERRORS[kind];
    const payload = JSON.stringify({ __type: ERROR_PREFIX + error.type, message: error.message });
    response.writeHead(error.status, {
      'content-type': CONTENT_TYPE,
      'content-length': Buffer.byteLength(payload),
      'x-amzn-requestid': randomUUID(),
    });
    response.end(payload);
  };

  const handle = async (request: IncomingMessage, response: ServerResponse) => {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of request) {
      size += (chunk as Buffer).length;
      if (size > MAX_BODY_BYTES) throw new Error('request body too large');
      chunks.push(chunk as Buffer);
    }
    const body = Buffer.concat(chunks);
    const targetHeader = String(request.headers['x-amz-target'] ?? '');
    const operation = targetHeader.slice(targetHeader.indexOf('.') + 1) || 'unknown';
    calls[operation] = (calls[operation] ?? 0) + 1;

    const fault = take(operation, body.toString('utf8'));
    if (fault?.kind === 'trickle') {
      faulted[operation] = (faulted[operation] ?? 0) + 1;
      await trickle(response, await forward(request, body), fault.ms ?? 0);
      return;
    }
    if (fault) {
      await sleep(fault.ms ?? 0);
      if (fault.kind !== 'delay') faulted[operation] = (faulted[operation] ?? 0) + 1;
      switch (fault.kind) {
        case 'delay':
          break;
        case 'drop':
          response.socket?.destroy();
          return;
        case 'apply-then-internal':
          await forward(request, body);
          sendError(response, fault.kind);
          return;
        default:
          sendError(response, fault.kind);
          return;
      }
    }
    const answer = await forward(request, body);
    response.writeHead(answer.status, answer.headers);
    response.end(answer.body);
  };

  const server = createServer((request, response) => {
    handle(request, response).catch(() => {
      if (!response.headersSent) sendError(response, 'internal');
      else response.destroy();
    });
  });
  server.on('clientError', (_error, socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      server.on('error', () => {});
      resolve();
    });
  });
  const address = server.address() as AddressInfo;

  let closing: Promise<void> | undefined;
  return {
    url: `http://${address.address}:${address.port}`,
    calls,
    faulted,
    inject(fault) {
      const times = fault.times ?? 1;
      if (!(times === Number.POSITIVE_INFINITY || (Number.isInteger(times) && times >= 1))) {
        throw new RangeError(`inject: times must be a positive integer or Infinity, got ${times}`);
      }
      const skip = fault.skip ?? 0;
      if (!Number.isInteger(skip) || skip < 0) {
        throw new RangeError(`inject: skip must be a non-negative integer, got ${skip}`);
      }
      queue.push({ fault, skip, remaining: times });
    },
    pending: () => queue.length,
    clearFaults() {
      queue = [];
      for (const operation of Object.keys(faulted)) delete faulted[operation];
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        closed = true;
        for (const timer of timers) clearTimeout(timer);
        timers.clear();
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
