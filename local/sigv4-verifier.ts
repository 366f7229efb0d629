/**
 * What API Gateway's `AWS_IAM` authorization does before a service API route runs, for
 * `npm start` and the tests: checks a request's Signature Version 4 against one known
 * credential pair and, when it holds, names the caller as `requestContext.authorizer.iam`
 * does. The signature is recomputed with `@smithy/signature-v4`, the signer the AWS SDK
 * itself uses, over exactly the headers the request says it signed.
 * @see https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html
 * @see https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-access-control-iam.html
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { Hash } from '@smithy/hash-node';
import { SignatureV4 } from '@smithy/signature-v4';

export interface ServiceCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string | undefined;
}

/** What API Gateway puts in `requestContext.authorizer.iam` for a verified caller. */
export interface IamIdentity {
  accessKey: string;
  accountId: string;
  callerId: string;
  userArn: string;
  principalOrgId: string | null;
  cognitoIdentity: null;
}

/** The parts of an HTTP request a signature covers. */
export interface SignedRequestParts {
  method: string;
  /** The request target's path as sent (still percent-encoded). */
  path: string;
  /** The raw query string, without `?`. */
  rawQuery: string;
  /** Header names in lower case; repeated headers joined with commas. */
  headers: Readonly<Record<string, string>>;
  body: Uint8Array;
}

/** AWS refuses a request whose `x-amz-date` is more than 5 minutes from its own clock. */
export const MAX_CLOCK_SKEW_MS = 5 * 60 * 1000;

/** The account and principal the local caller stands for. */
export const LOCAL_ACCOUNT_ID = '000000000000';
export const LOCAL_CALLER_ARN = `arn:aws:iam::${LOCAL_ACCOUNT_ID}:user/local-service-caller`;

const AUTHORIZATION =
  /^AWS4-HMAC-SHA256 Credential=([^/\s,]+)\/(\d{8})\/([a-z0-9-]+)\/([a-z0-9-]+)\/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$/;
const AMZ_DATE = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/;

/** A fresh local credential pair, shaped like AWS's, for `npm start` without AWS variables. */
export function generateLocalCredentials(): ServiceCredentials {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  const id = [...randomBytes(16)].map((byte) => alphabet.charAt(byte % 32)).join('');
  return {
    accessKeyId: `AKIA${id}`,
    secretAccessKey: randomBytes(30).toString('base64'),
  };
}

/**
 * Verifies requests signed for `execute-api` in `region` with `credentials`; anything
 * else (no or malformed `Authorization`, another key, scope, date or signature, a session
 * token that does not match) is `undefined`, which the server answers as API Gateway
 * does: `403 {"message":"Forbidden"}`.
 */
export class SigV4Verifier {
  readonly #credentials: ServiceCredentials;
  readonly #region: string;
  readonly #now: () => number;
  readonly #signer: SignatureV4;

  constructor(options: { credentials: ServiceCredentials; region: string; now?: () => number }) {
    this.#credentials = options.credentials;
    this.#region = options.region;
    this.#now = options.now ?? Date.now;
    this.#signer = new SignatureV4({
      credentials: options.credentials,
      region: options.region,
      service: 'execute-api',
      sha256: Hash.bind(null, 'sha256'),
    });
  }

  async verify(request: SignedRequestParts): Promise<IamIdentity | undefined> {
    const match = AUTHORIZATION.exec(request.headers.authorization ?? '');
    if (!match) return undefined;
    const [, accessKeyId, shortDate, region, service, signedList = '', signature = ''] = match;
    if (accessKeyId !== this.#credentials.accessKeyId) return undefined;
    if (region !== this.#region || service !== 'execute-api') return undefined;
    const signedNames = signedList.split(';');
    if (!signedNames.includes('host') || !signedNames.includes('x-amz-date')) return undefined;
    const signingDate = parseAmzDate(request.headers['x-amz-date']);
    if (signingDate === undefined || !request.headers['x-amz-date']?.startsWith(shortDate ?? '')) {
      return undefined;
    }
    if (Math.abs(this.#now() - signingDate.getTime()) > MAX_CLOCK_SKEW_MS) return undefined;
    const token = this.#credentials.sessionToken;
    if (token !== undefined) {
      if (request.headers['x-amz-security-token'] !== token) return undefined;
      if (!signedNames.includes('x-amz-security-token')) return undefined;
    }

    // The signer takes `x-amz-content-sha256` on trust; the body is what was sent, so a
    // claimed hash must be the body's (API Gateway signs no `UNSIGNED-PAYLOAD` either).
    const claimedHash = request.headers['x-amz-content-sha256'];
    const bodyHash = createHash('sha256').update(request.body).digest('hex');
    if (claimedHash !== undefined && claimedHash !== bodyHash) return undefined;

    const headers: Record<string, string> = {};
    for (const name of signedNames) {
      const value = request.headers[name];
      if (value === undefined) return undefined;
      headers[name] = value;
    }
    const expected = await this.#signer.sign(
      {
        method: request.method,
        protocol: 'https:',
        hostname: headers.host ?? '',
        path: request.path,
        query: queryOf(request.rawQuery),
        headers,
        body: request.body,
      },
      { signingDate, signableHeaders: new Set(signedNames) },
    );
    const recomputed = /Signature=([0-9a-f]{64})$/.exec(
      String(expected.headers.authorization),
    )?.[1];
    const sameHeaders = /SignedHeaders=([a-z0-9;-]+),/.exec(
      String(expected.headers.authorization),
    )?.[1];
    if (recomputed === undefined || sameHeaders !== signedList) return undefined;
    if (!timingSafeEqual(Buffer.from(recomputed), Buffer.from(signature))) return undefined;
    return {
      accessKey: accessKeyId,
      accountId: LOCAL_ACCOUNT_ID,
      callerId: accessKeyId,
      userArn: LOCAL_CALLER_ARN,
      principalOrgId: null,
      cognitoIdentity: null,
    };
  }
}

function parseAmzDate(value: string | undefined): Date | undefined {
  const match = AMZ_DATE.exec(value ?? '');
  if (!match) return undefined;
  const [, year, month, day, hour, minute, second] = match.map(Number);
  return new Date(
    Date.UTC(year ?? 0, (month ?? 1) - 1, day ?? 0, hour ?? 0, minute ?? 0, second ?? 0),
  );
}

/** The query as the signer takes it: decoded names and values, repeats as lists. */
function queryOf(rawQuery: string): Record<string, string | string[]> {
  const query: Record<string, string | string[]> = {};
  for (const [name, value] of new URLSearchParams(rawQuery)) {
    const previous = query[name];
    if (previous === undefined) query[name] = value;
    else query[name] = Array.isArray(previous) ? [...previous, value] : [previous, value];
  }
  return query;
}
