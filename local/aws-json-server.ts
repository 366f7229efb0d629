/**
 * Minimal AWS JSON 1.1 protocol server shared by the local KMS and Secrets Manager emulators.
 *
 * Wire format (checked against the installed @aws-sdk/client-kms / client-secrets-manager,
 * which use `AwsJson1_1Protocol`, not awsQueryCompatible, not rpc-v2-cbor):
 *   request:  POST /  Content-Type: application/x-amz-json-1.1
 *             X-Amz-Target: <TargetPrefix>.<Operation>   (TrentService.* / secretsmanager.*)
 *             Authorization: AWS4-HMAC-SHA256 ...           (signature is not verified)
 *             body: JSON object; blobs as base64 strings; timestamps as epoch seconds
 *   success:  200 + JSON object
 *   error:    4xx/5xx + JSON `{"__type":"<Code>","message":"..."}` and `x-amzn-ErrorType: <Code>`
 * Every response carries `x-amzn-RequestId` (surfaces as `$metadata.requestId`).
 *
 * Only node built-ins; never writes to stdout/stderr.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface EmulatorFault {
  operation: string;
  kind: 'throttle' | 'internal' | 'disabled' | 'access-denied' | 'delay';
  ms?: number;
  times?: number;
}

export type FaultKind = EmulatorFault['kind'];

const FAULT_KINDS: readonly FaultKind[] = [
  'throttle',
  'internal',
  'disabled',
  'access-denied',
  'delay',
];

/** An error answered to the client as an AWS JSON error document. */
export class AwsJsonError extends Error {
  readonly type: string;
  readonly status: number;
  constructor(type: string, message: string, status = 400) {
    super(message);
    this.name = type;
    this.type = type;
    this.status = status;
  }
}

export type JsonObject = Record<string, unknown>;
export type OperationHandler = (input: JsonObject) => JsonObject | Promise<JsonObject>;

export interface AwsJsonServiceDefinition {
  /** X-Amz-Target prefix, e.g. `TrentService` or `secretsmanager`. */
  readonly targetPrefix: string;
  readonly operations: Readonly<Record<string, OperationHandler>>;
  /** Maps an injected (non-delay) fault to the service's error. */
  faultError(kind: Exclude<FaultKind, 'delay'>, operation: string): AwsJsonError;
}

export interface AwsJsonServer {
  readonly url: string;
  readonly calls: Record<string, number>;
  resetCalls(): void;
  inject(fault: EmulatorFault): void;
  clearFaults(): void;
  close(): Promise<void>;
}

interface QueuedFault {
  readonly kind: FaultKind;
  readonly ms: number;
  remaining: number;
}

const MAX_BODY_BYTES = 1024 * 1024;
const JSON_CONTENT_TYPE = 'application/x-amz-json-1.1';
/** Fault operation that matches every operation (after the operation's own queue). */
export const ANY_OPERATION = '*';

export async function startAwsJsonServer(
  def: AwsJsonServiceDefinition,
  opts: { port?: number; host?: string } = {},
): Promise<AwsJsonServer> {
  const host = opts.host ?? '127.0.0.1';
  const calls: Record<string, number> = {};
  const faults = new Map<string, QueuedFault[]>();
  const wakers = new Set<() => void>();
  let closed = false;
  let closing: Promise<void> | undefined;

  const count = (name: string): void => {
    calls[name] = (Object.hasOwn(calls, name) ? (calls[name] ?? 0) : 0) + 1;
  };

  const sleep = (ms: number): Promise<void> =>
    new Promise<void>((resolve) => {
      if (closed || ms <= 0) {
        resolve();
        return;
      }
      const wake = (): void => {
        clearTimeout(timer);
        wakers.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      wakers.add(wake);
    });

  const takeFault = (operation: string): QueuedFault | undefined => {
    for (const key of [operation, ANY_OPERATION]) {
      const queue = faults.get(key);
      const head = queue?.[0];
      if (queue === undefined || head === undefined) continue;
      head.remaining -= 1;
      if (head.remaining <= 0) queue.shift();
      if (queue.length === 0) faults.delete(key);
      return head;
    }
    return undefined;
  };

  const send = (res: ServerResponse, status: number, body: JsonObject, errorType?: string) => {
    if (closed || res.writableEnded || res.destroyed) return;
    const payload = Buffer.from(JSON.stringify(body), 'utf8');
    const headers: Record<string, string | number> = {
      'Content-Type': JSON_CONTENT_TYPE,
      'Content-Length': payload.length,
      'x-amzn-RequestId': randomUUID(),
    };
    if (errorType !== undefined) headers['x-amzn-ErrorType'] = errorType;
    res.writeHead(status, headers);
    res.end(payload);
  };

  const sendError = (res: ServerResponse, err: AwsJsonError) => {
    send(res, err.status, { __type: err.type, message: err.message }, err.type);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const body = await readBody(req, MAX_BODY_BYTES);

    const target = headerValue(req, 'x-amz-target');
    const prefix = `${def.targetPrefix}.`;
    const operation = target?.startsWith(prefix) ? target.slice(prefix.length) : undefined;
    if (target !== undefined) count(operation ?? target);

    if (req.method !== 'POST' || (req.url ?? '/').split('?')[0] !== '/') {
      sendError(res, new AwsJsonError('UnknownOperationException', 'Unknown operation', 404));
      return;
    }
    if (body === undefined) {
      res.setHeader('Connection', 'close');
      sendError(res, new AwsJsonError('SerializationException', 'Request body is too large', 413));
      return;
    }
    const handler =
      operation !== undefined && Object.hasOwn(def.operations, operation)
        ? def.operations[operation]
        : undefined;
    if (operation === undefined || handler === undefined) {
      sendError(
        res,
        new AwsJsonError(
          'UnknownOperationException',
          target === undefined ? 'Missing X-Amz-Target header' : `Unknown operation ${target}`,
        ),
      );
      return;
    }
    if (!headerValue(req, 'authorization')?.startsWith('AWS4-HMAC-SHA256 ')) {
      sendError(
        res,
        new AwsJsonError('MissingAuthenticationTokenException', 'Missing Authentication Token'),
      );
      return;
    }
    const contentType = (headerValue(req, 'content-type') ?? '').split(';')[0]?.trim() ?? '';
    if (contentType !== JSON_CONTENT_TYPE && contentType !== 'application/x-amz-json-1.0') {
      sendError(
        res,
        new AwsJsonError(
          'SerializationException',
          `Unsupported Content-Type '${contentType}', expected ${JSON_CONTENT_TYPE}`,
        ),
      );
      return;
    }
    let input: unknown;
    try {
      input = body.length === 0 ? {} : JSON.parse(body.toString('utf8'));
    } catch {
      sendError(res, new AwsJsonError('SerializationException', 'Request body is not valid JSON'));
      return;
    }
    if (typeof input !== 'object' || input === null || Array.isArray(input)) {
      sendError(
        res,
        new AwsJsonError('SerializationException', 'Request body must be a JSON object'),
      );
      return;
    }

    const fault = takeFault(operation);
    if (fault !== undefined) {
      await sleep(fault.ms);
      if (fault.kind !== 'delay') {
        sendError(res, def.faultError(fault.kind, operation));
        return;
      }
    }

    try {
      const output = await handler(input as JsonObject);
      send(res, 200, output);
    } catch (err) {
      if (err instanceof AwsJsonError) {
        sendError(res, err);
      } else {
        const message = err instanceof Error ? err.message : String(err);
        sendError(res, new AwsJsonError('InternalFailure', message, 500));
      }
    }
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      const message = err instanceof Error ? err.message : String(err);
      sendError(res, new AwsJsonError('InternalFailure', message, 500));
    });
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once('error', onError);
    server.listen(opts.port ?? 0, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const urlHost =
    address.address === '0.0.0.0' || address.address === '::'
      ? '127.0.0.1'
      : address.address.includes(':')
        ? `[${address.address}]`
        : address.address;

  return {
    url: `http://${urlHost}:${address.port}`,
    calls,
    resetCalls() {
      for (const key of Object.keys(calls)) delete calls[key];
    },
    inject(fault: EmulatorFault) {
      const { operation, kind } = fault;
      if (operation !== ANY_OPERATION && !Object.hasOwn(def.operations, operation)) {
        throw new Error(
          `inject: unknown operation '${operation}' (known: ${Object.keys(def.operations).join(', ')}, or '${ANY_OPERATION}')`,
        );
      }
      if (!FAULT_KINDS.includes(kind)) throw new Error(`inject: unknown fault kind '${kind}'`);
      const times = fault.times ?? 1;
      if (!(times === Number.POSITIVE_INFINITY || (Number.isInteger(times) && times >= 1))) {
        throw new Error(`inject: times must be a positive integer or Infinity, got ${times}`);
      }
      const ms = fault.ms ?? 0;
      if (!Number.isFinite(ms) || ms < 0) {
        throw new Error(`inject: ms must be a finite non-negative number, got ${ms}`);
      }
      const queue = faults.get(operation) ?? [];
      queue.push({ kind, ms, remaining: times });
      faults.set(operation, queue);
    },
    clearFaults() {
      faults.clear();
    },
    close() {
      if (closing !== undefined) return closing;
      closed = true;
      for (const wake of [...wakers]) wake();
      closing = new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

function headerValue(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

async function readBody(req: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  let tooLarge = false;
  for await (const chunk of req) {
    const buf = chunk as Buffer;
    size += buf.length;
    if (size > limit) tooLarge = true;
    else chunks.push(buf);
  }
  return tooLarge ? undefined : Buffer.concat(chunks);
}

// ---------------------------------------------------------------------------------------------
// Input validation helpers, with AWS (Coral) style messages.

function memberName(field: string): string {
  return field.charAt(0).toLowerCase() + field.slice(1);
}

export function validationError(message: string): AwsJsonError {
  return new AwsJsonError('ValidationException', message);
}

function constraint(field: string, value: unknown, text: string): AwsJsonError {
  const shown = value === undefined || value === null ? 'null' : `'${String(value)}'`;
  return validationError(
    `1 validation error detected: Value ${shown} at '${memberName(field)}' failed to satisfy constraint: ${text}`,
  );
}

function typeError(field: string, expected: string): AwsJsonError {
  return new AwsJsonError('SerializationException', `${field} must be ${expected}`);
}

interface LengthOpts {
  required?: boolean;
  min?: number;
  max?: number;
}

function present(input: JsonObject, field: string): boolean {
  return Object.hasOwn(input, field) && input[field] !== null && input[field] !== undefined;
}

export function readString(
  input: JsonObject,
  field: string,
  opts: LengthOpts & { required: true },
): string;
export function readString(input: JsonObject, field: string, opts?: LengthOpts): string | undefined;
export function readString(
  input: JsonObject,
  field: string,
  opts: LengthOpts = {},
): string | undefined {
  if (!present(input, field)) {
    if (opts.required) throw constraint(field, undefined, 'Member must not be null');
    return undefined;
  }
  const value = input[field];
  if (typeof value !== 'string') throw typeError(field, 'a string');
  checkLength(field, value, value.length, opts, 'Member must have length');
  return value;
}

export function readBlob(
  input: JsonObject,
  field: string,
  opts: LengthOpts & { required: true },
): Buffer;
export function readBlob(input: JsonObject, field: string, opts?: LengthOpts): Buffer | undefined;
export function readBlob(
  input: JsonObject,
  field: string,
  opts: LengthOpts = {},
): Buffer | undefined {
  if (!present(input, field)) {
    if (opts.required) throw constraint(field, undefined, 'Member must not be null');
    return undefined;
  }
  const value = input[field];
  if (
    typeof value !== 'string' ||
    value.length % 4 !== 0 ||
    !/^[A-Za-z0-9+/]*={0,2}$/.test(value)
  ) {
    throw typeError(field, 'a base64-encoded blob');
  }
  const buf = Buffer.from(value, 'base64');
  checkLength(field, '<blob>', buf.length, opts, 'Member must have length');
  return buf;
}

export function readInt(
  input: JsonObject,
  field: string,
  opts: { min?: number; max?: number } = {},
): number | undefined {
  if (!present(input, field)) return undefined;
  const value = input[field];
  if (typeof value !== 'number' || !Number.isInteger(value)) throw typeError(field, 'an integer');
  if (opts.min !== undefined && value < opts.min) {
    throw constraint(field, value, `Member must have value greater than or equal to ${opts.min}`);
  }
  if (opts.max !== undefined && value > opts.max) {
    throw constraint(field, value, `Member must have value less than or equal to ${opts.max}`);
  }
  return value;
}

export function readBoolean(input: JsonObject, field: string): boolean | undefined {
  if (!present(input, field)) return undefined;
  const value = input[field];
  if (typeof value !== 'boolean') throw typeError(field, 'a boolean');
  return value;
}

export function readEnum<T extends string>(
  input: JsonObject,
  field: string,
  values: readonly T[],
): T | undefined {
  const value = readString(input, field);
  if (value === undefined) return undefined;
  if (!(values as readonly string[]).includes(value)) {
    throw constraint(field, value, `Member must satisfy enum value set: [${values.join(', ')}]`);
  }
  return value as T;
}

export function readStringMap(
  input: JsonObject,
  field: string,
): Record<string, string> | undefined {
  if (!present(input, field)) return undefined;
  const value = input[field];
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw typeError(field, 'a map of strings');
  }
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== 'string') throw typeError(`${field}.${k}`, 'a string');
    out[k] = v;
  }
  return out;
}

export function readStringList(
  input: JsonObject,
  field: string,
  opts: { min?: number; max?: number } = {},
): string[] | undefined {
  if (!present(input, field)) return undefined;
  const value = input[field];
  if (!Array.isArray(value) || value.some((v) => typeof v !== 'string')) {
    throw typeError(field, 'a list of strings');
  }
  checkLength(field, `[${value.join(', ')}]`, value.length, opts, 'Member must have length');
  return value as string[];
}

function checkLength(
  field: string,
  shown: unknown,
  length: number,
  opts: { min?: number; max?: number },
  text: string,
): void {
  if (opts.min !== undefined && length < opts.min) {
    throw constraint(field, shown, `${text} greater than or equal to ${opts.min}`);
  }
  if (opts.max !== undefined && length > opts.max) {
    throw constraint(field, shown, `${text} less than or equal to ${opts.max}`);
  }
}

export function epochSeconds(date: Date): number {
  return date.getTime() / 1000;
}
