/** Small node:http helpers of the fake Salesforce server (no framework). */
import type { IncomingMessage, ServerResponse } from 'node:http';

export const MAX_BODY_BYTES = 64 * 1024;

export class BodyTooLargeError extends Error {}

export async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
    size += buf.length;
    if (size > MAX_BODY_BYTES) throw new BodyTooLargeError('request body too large');
    chunks.push(buf);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Form parameters of a request: the body when it is form-encoded, otherwise none. */
export function formParams(req: IncomingMessage, body: string): URLSearchParams {
  const type = (req.headers['content-type'] ?? '').toLowerCase();
  return type.startsWith('application/x-www-form-urlencoded')
    ? new URLSearchParams(body)
    : new URLSearchParams();
}

const NO_STORE = { 'cache-control': 'no-cache, no-store', pragma: 'no-cache' };

export function send(
  res: ServerResponse,
  status: number,
  body: string,
  contentType: string | null,
  headers: Record<string, string> = {},
): void {
  if (res.headersSent || res.destroyed) return;
  const all: Record<string, string | number> = { ...NO_STORE, ...headers };
  if (contentType !== null) all['content-type'] = contentType;
  all['content-length'] = Buffer.byteLength(body);
  res.writeHead(status, all);
  res.end(body);
}

export function sendJson(
  res: ServerResponse,
  status: number,
  value: unknown,
  headers: Record<string, string> = {},
): void {
  send(res, status, JSON.stringify(value), 'application/json;charset=UTF-8', headers);
}

export function sendOAuthError(
  res: ServerResponse,
  status: number,
  error: string,
  description: string,
): void {
  sendJson(res, status, { error, error_description: description });
}

export function redirect(res: ServerResponse, location: string): void {
  send(res, 302, '', null, { location });
}

/** Client credentials from HTTP Basic (RFC 6749 2.3.1) or, preferably, the body. */
export function clientCredentials(
  req: IncomingMessage,
  params: URLSearchParams,
): { clientId: string | null; clientSecret: string | null } {
  let clientId = params.get('client_id');
  let clientSecret = params.get('client_secret');
  const auth = req.headers.authorization ?? '';
  const match = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(auth);
  if (clientId === null && match?.[1] !== undefined) {
    const decoded = Buffer.from(match[1], 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon >= 0) {
      clientId = formDecode(decoded.slice(0, colon));
      clientSecret ??= formDecode(decoded.slice(colon + 1));
    }
  }
  return { clientId, clientSecret };
}

function formDecode(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    return s;
  }
}

/** `Authorization: Bearer <token>` (Salesforce also accepts the `OAuth` scheme). */
export function bearerToken(req: IncomingMessage): string | null {
  const match = /^(?:Bearer|OAuth)\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
  return match?.[1] ?? null;
}

/** Tracks whether the client went away before we answered. */
export function watchClient(res: ServerResponse): { readonly gone: boolean } {
  const state = { gone: false };
  res.on('close', () => {
    if (!res.writableFinished) state.gone = true;
  });
  return state;
}

/** Timers that all end at once when the server closes. */
export class Sleeper {
  private readonly pending = new Set<{ timer: NodeJS.Timeout; resolve: () => void }>();
  closed = false;

  sleep(ms: number): Promise<void> {
    if (ms <= 0 || this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const entry = {
        timer: setTimeout(() => {
          this.pending.delete(entry);
          resolve();
        }, ms),
        resolve,
      };
      this.pending.add(entry);
    });
  }

  close(): void {
    this.closed = true;
    for (const entry of this.pending) {
      clearTimeout(entry.timer);
      entry.resolve();
    }
    this.pending.clear();
  }
}
