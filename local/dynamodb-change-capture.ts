/**
 * DynamoDB Streams for dynalite, which has none: an HTTP proxy in front of it that turns
 * each successful write (PutItem, UpdateItem, DeleteItem) into the stream record DynamoDB
 * would write (`NEW_AND_OLD_IMAGES`), with the real old and new images read from dynalite
 * around the write. Writes to one key are serialized here, so the images are exact; a
 * write that changes nothing makes no record, as in DynamoDB. Records that pass the event
 * source mapping's filter patterns are handed, in order and in batches, to a handler (the
 * publisher's own), which answers `batchItemFailures` as Lambda's `ReportBatchItemFailures`
 * expects: the batch is retried with backoff from the first failed record on, until every
 * record is delivered (at least once), as the event source mapping does.
 * @see https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Streams.html
 * @see https://docs.aws.amazon.com/lambda/latest/dg/services-ddb-batchfailurereporting.html
 *
 * Only node:http; never writes to stdout/stderr.
 */
import { randomUUID } from 'node:crypto';
import {
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type OutgoingHttpHeaders,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import type {
  AttributeValue,
  DynamoDBBatchResponse,
  DynamoDBRecord,
  DynamoDBStreamEvent,
} from 'aws-lambda';

type Item = Record<string, AttributeValue>;

export type StreamHandler = (
  event: DynamoDBStreamEvent,
) => Promise<DynamoDBBatchResponse | undefined>;

export interface ChangeCapture {
  readonly url: string;
  /** Every stream record captured, filtered or not, oldest first (for tests). */
  readonly records: readonly DynamoDBRecord[];
  /** How many times the handler was invoked, and how many of those failed some records. */
  readonly stats: { invocations: number; retries: number; delivered: number };
  /** Sets the handler the filtered records go to (the publisher, once it is loaded). */
  setHandler(handler: StreamHandler): void;
  /** Resolves once every record captured so far is delivered. */
  drained(): Promise<void>;
  close(): Promise<void>;
}

const WRITES = new Set(['PutItem', 'UpdateItem', 'DeleteItem']);
const MAX_BODY_BYTES = 16 * 1024 * 1024;
const TABLE_ARN_PREFIX = 'arn:aws:dynamodb:us-east-1:000000000000:table/';

export async function startDynamoDbChangeCapture(options: {
  /** dynalite's URL. */
  target: string;
  host?: string;
  /** The event source mapping's filter patterns (ORed); absent: every record. */
  filterPatterns?: readonly Record<string, unknown>[];
  /** The table's key attributes (the session table's: `pk`). */
  keyAttributes?: readonly string[];
  batchSize?: number;
  /** First retry delay; doubled per failed attempt, capped at `maxRetryDelayMs`. */
  retryDelayMs?: number;
  maxRetryDelayMs?: number;
}): Promise<ChangeCapture> {
  const target = new URL(options.target);
  const keyAttributes = options.keyAttributes ?? ['pk'];
  const batchSize = options.batchSize ?? 100;
  const retryDelayMs = options.retryDelayMs ?? 20;
  const maxRetryDelayMs = options.maxRetryDelayMs ?? 1_000;
  const records: DynamoDBRecord[] = [];
  const stats = { invocations: 0, retries: 0, delivered: 0 };
  const keyLocks = new Map<string, Promise<void>>();
  let queue: DynamoDBRecord[] = [];
  let handler: StreamHandler | undefined;
  let delivering = false;
  let failures = 0;
  let sequence = 0;
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  let waiters: (() => void)[] = [];

  const send = (
    headers: OutgoingHttpHeaders,
    body: Buffer,
  ): Promise<{ status: number; headers: OutgoingHttpHeaders; body: Buffer }> =>
    new Promise((resolve, reject) => {
      const outgoing = httpRequest(
        {
          host: target.hostname,
          port: target.port,
          method: 'POST',
          path: '/',
          headers: { ...headers, host: target.host, 'content-length': body.length },
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
    });

  /** A strongly consistent GetItem, answered as the wire JSON (binary as base64). */
  const read = async (
    headers: OutgoingHttpHeaders,
    table: string,
    key: Item,
  ): Promise<Item | undefined> => {
    const answer = await send(
      { ...headers, 'x-amz-target': 'DynamoDB_20120810.GetItem' },
      Buffer.from(JSON.stringify({ TableName: table, Key: key, ConsistentRead: true })),
    );
    if (answer.status !== 200) throw new Error(`change capture: GetItem answered ${answer.status}`);
    return (JSON.parse(answer.body.toString('utf8')) as { Item?: Item }).Item;
  };

  const capture = (table: string, key: Item, before: Item | undefined, after: Item | undefined) => {
    if (before === undefined && after === undefined) return;
    if (before !== undefined && after !== undefined && sameItem(before, after)) return;
    sequence += 1;
    const record: DynamoDBRecord = {
      eventID: randomUUID().replaceAll('-', ''),
      eventName: before === undefined ? 'INSERT' : after === undefined ? 'REMOVE' : 'MODIFY',
      eventVersion: '1.1',
      eventSource: 'aws:dynamodb',
      awsRegion: 'us-east-1',
      eventSourceARN: `${TABLE_ARN_PREFIX}${table}/stream/local`,
      dynamodb: {
        ApproximateCreationDateTime: Math.floor(Date.now() / 1000),
        Keys: key,
        ...(after === undefined ? {} : { NewImage: after }),
        ...(before === undefined ? {} : { OldImage: before }),
        SequenceNumber: String(sequence).padStart(21, '0'),
        SizeBytes: Buffer.byteLength(JSON.stringify({ key, before, after })),
        StreamViewType: 'NEW_AND_OLD_IMAGES',
      },
    };
    records.push(record);
    const patterns = options.filterPatterns;
    if (patterns === undefined || patterns.some((pattern) => matchesPattern(record, pattern))) {
      queue.push(record);
      schedule(0);
    }
  };

  const schedule = (delayMs: number) => {
    if (closed || delivering || timer !== undefined) return;
    timer = setTimeout(() => {
      timer = undefined;
      void deliver();
    }, delayMs);
  };

  const settle = () => {
    if (queue.length > 0 || delivering) return;
    const done = waiters;
    waiters = [];
    for (const wake of done) wake();
  };

  const deliver = async () => {
    if (closed || delivering || handler === undefined || queue.length === 0) return settle();
    delivering = true;
    const batch = queue.slice(0, batchSize);
    let firstFailed = batch.length;
    try {
      stats.invocations += 1;
      const answer = await handler({ Records: batch });
      const failed = new Set(
        (answer?.batchItemFailures ?? []).map((failure) => failure.itemIdentifier),
      );
      if (failed.size > 0) {
        const index = batch.findIndex((record) =>
          failed.has(record.dynamodb?.SequenceNumber ?? ''),
        );
        firstFailed = Math.max(index, 0);
      }
    } catch {
      firstFailed = 0;
    }
    stats.delivered += firstFailed;
    queue = queue.slice(firstFailed);
    delivering = false;
    if (firstFailed < batch.length) {
      stats.retries += 1;
      failures += 1;
      schedule(Math.min(retryDelayMs * 2 ** (failures - 1), maxRetryDelayMs));
    } else {
      failures = 0;
      if (queue.length > 0) schedule(0);
    }
    settle();
  };

  const withKeyLock = async <T>(lockKey: string, work: () => Promise<T>): Promise<T> => {
    const previous = keyLocks.get(lockKey) ?? Promise.resolve();
    let release = () => {};
    const current = new Promise<void>((resolve) => {
      release = resolve;
    });
    const chained = previous.then(() => current);
    keyLocks.set(lockKey, chained);
    await previous;
    try {
      return await work();
    } finally {
      release();
      if (keyLocks.get(lockKey) === chained) keyLocks.delete(lockKey);
    }
  };

  const handle = async (request: IncomingMessage) => {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of request) {
      size += (chunk as Buffer).length;
      if (size > MAX_BODY_BYTES) throw new Error('request body too large');
      chunks.push(chunk as Buffer);
    }
    const body = Buffer.concat(chunks);
    const headers: OutgoingHttpHeaders = { ...request.headers };
    delete headers['content-length'];
    const targetHeader = String(request.headers['x-amz-target'] ?? '');
    const operation = targetHeader.slice(targetHeader.indexOf('.') + 1);
    if (!WRITES.has(operation)) return send(headers, body);
    let input: { TableName?: string; Key?: Item; Item?: Item };
    try {
      input = JSON.parse(body.toString('utf8')) as typeof input;
    } catch {
      return send(headers, body);
    }
    const table = input.TableName ?? '';
    const source = operation === 'PutItem' ? input.Item : input.Key;
    if (source === undefined) return send(headers, body);
    const key: Item = {};
    for (const name of keyAttributes) {
      const value = source[name];
      if (value !== undefined) key[name] = value;
    }
    return withKeyLock(`${table}\u0000${JSON.stringify(key)}`, async () => {
      const before = await read(headers, table, key);
      const answer = await send(headers, body);
      if (answer.status === 200) capture(table, key, before, await read(headers, table, key));
      return answer;
    });
  };

  const server = createServer((request, response) => {
    handle(request)
      .then((answer) => {
        response.writeHead(answer.status, answer.headers);
        response.end(answer.body);
      })
      .catch(() => {
        if (!response.headersSent) {
          const payload = JSON.stringify({
            __type: 'com.amazonaws.dynamodb.v20120810#InternalServerError',
            message: 'Internal server error',
          });
          response.writeHead(500, { 'content-type': 'application/x-amz-json-1.0' });
          response.end(payload);
        } else response.destroy();
      });
  });
  server.on('clientError', (_error, socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, options.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${address.address}:${address.port}`,
    records,
    stats,
    setHandler(next) {
      handler = next;
      schedule(0);
    },
    drained() {
      if (queue.length === 0 && !delivering) return Promise.resolve();
      return new Promise<void>((resolve) => waiters.push(resolve));
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        closed = true;
        if (timer !== undefined) clearTimeout(timer);
        for (const wake of waiters) wake();
        waiters = [];
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

/** Two items with the same attributes and values (attribute order aside). */
function sameItem(a: Item, b: Item): boolean {
  const names = Object.keys(a);
  if (names.length !== Object.keys(b).length) return false;
  return names.every((name) => JSON.stringify(a[name]) === JSON.stringify(b[name]));
}

/**
 * The subset of EventBridge/Lambda event pattern matching the filter patterns use: nested
 * objects, lists of exact values, `{prefix}` and `{exists}`.
 * @see https://docs.aws.amazon.com/lambda/latest/dg/invocation-eventfiltering.html
 */
export function matchesPattern(value: unknown, pattern: unknown): boolean {
  if (Array.isArray(pattern)) {
    return pattern.some((rule) => {
      if (typeof rule === 'object' && rule !== null) {
        const { prefix, exists } = rule as { prefix?: string; exists?: boolean };
        if (exists !== undefined) return exists === (value !== undefined);
        if (prefix !== undefined) return typeof value === 'string' && value.startsWith(prefix);
        return false;
      }
      return value === rule;
    });
  }
  if (typeof pattern !== 'object' || pattern === null) return false;
  const object = (typeof value === 'object' && value !== null ? value : {}) as Record<
    string,
    unknown
  >;
  return Object.entries(pattern).every(([name, inner]) => matchesPattern(object[name], inner));
}
