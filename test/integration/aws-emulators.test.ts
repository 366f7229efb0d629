import {
  DecryptCommand,
  DescribeKeyCommand,
  DisabledException,
  EncryptCommand,
  GenerateDataKeyCommand,
  IncorrectKeyException,
  InvalidCiphertextException,
  KMSClient,
  type KMSClientConfig,
  KMSInternalException,
  KMSServiceException,
  NotFoundException,
} from '@aws-sdk/client-kms';
import {
  CreateSecretCommand,
  DescribeSecretCommand,
  GetSecretValueCommand,
  InternalServiceError,
  InvalidRequestException,
  PutSecretValueCommand,
  ResourceExistsException,
  ResourceNotFoundException,
  SecretsManagerClient,
  type SecretsManagerClientConfig,
  SecretsManagerServiceException,
} from '@aws-sdk/client-secrets-manager';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type KmsEmulator,
  type SecretsManagerEmulator,
  startKmsEmulator,
  startSecretsManagerEmulator,
} from '../../local/aws-emulators.ts';

const credentials = { accessKeyId: 'test', secretAccessKey: 'test' };
const region = 'us-east-1';
const context = { purpose: 'salesforce-token', session: 'sess-123' };

/** Runs `fn`, expecting it to reject; returns the rejection for inspection. */
async function rejection(fn: () => Promise<unknown>): Promise<Record<string, unknown> & Error> {
  try {
    await fn();
  } catch (err) {
    return err as Record<string, unknown> & Error;
  }
  throw new Error('expected a rejection');
}

function metadata(err: unknown): {
  httpStatusCode?: number;
  attempts?: number;
  requestId?: string;
} {
  return (err as { $metadata: { httpStatusCode?: number; attempts?: number } }).$metadata;
}

describe('KMS emulator through @aws-sdk/client-kms', () => {
  let kms: KmsEmulator;
  let keyArn: string;
  let otherKeyArn: string;
  const clients: KMSClient[] = [];
  const client = (extra: Partial<KMSClientConfig> = {}): KMSClient => {
    const c = new KMSClient({ endpoint: kms.url, region, credentials, ...extra });
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    kms = await startKmsEmulator();
    keyArn = kms.createKey({ alias: 'alias/token-broker' });
    otherKeyArn = kms.createKey();
  });
  afterAll(async () => {
    for (const c of clients) c.destroy();
    await kms.close();
  });

  it('round-trips GenerateDataKey and Decrypt with the encryption context', async () => {
    const c = client();
    const gen = await c.send(
      new GenerateDataKeyCommand({
        KeyId: 'alias/token-broker',
        KeySpec: 'AES_256',
        EncryptionContext: context,
      }),
    );
    expect(gen.KeyId).toBe(keyArn);
    expect(keyArn).toMatch(/^arn:aws:kms:us-east-1:\d{12}:key\/[0-9a-f-]{36}$/);
    expect(gen.Plaintext).toBeInstanceOf(Uint8Array);
    expect(gen.Plaintext?.length).toBe(32);
    expect(gen.$metadata.httpStatusCode).toBe(200);
    expect(gen.$metadata.requestId).toMatch(/^[0-9a-f-]{36}$/);

    // Context order does not matter; KeyId is optional and may be an alias, id or ARN.
    const reordered = { session: context.session, purpose: context.purpose };
    for (const KeyId of [undefined, 'alias/token-broker', keyArn, keyArn.split('/')[1]]) {
      const dec = await c.send(
        new DecryptCommand({
          CiphertextBlob: gen.CiphertextBlob,
          EncryptionContext: reordered,
          KeyId,
        }),
      );
      expect(dec.KeyId).toBe(keyArn);
      expect(Buffer.from(dec.Plaintext ?? []).equals(Buffer.from(gen.Plaintext ?? []))).toBe(true);
    }

    const small = await c.send(new GenerateDataKeyCommand({ KeyId: keyArn, NumberOfBytes: 7 }));
    expect(small.Plaintext?.length).toBe(7);
  });

  it('rejects a wrong or missing context, flipped bits and other keys', async () => {
    const c = client();
    const gen = await c.send(
      new GenerateDataKeyCommand({ KeyId: keyArn, KeySpec: 'AES_256', EncryptionContext: context }),
    );
    const blob = Buffer.from(gen.CiphertextBlob ?? []);
    const decrypt = (CiphertextBlob: Uint8Array, EncryptionContext?: Record<string, string>) =>
      rejection(() => c.send(new DecryptCommand({ CiphertextBlob, EncryptionContext })));

    const flipped = (index: number): Buffer => {
      const copy = Buffer.from(blob);
      copy[index] = (copy[index] ?? 0) ^ 0x01;
      return copy;
    };
    const otherKeyId = otherKeyArn.split('/')[1] ?? '';
    const swapped = Buffer.from(blob);
    swapped.write(otherKeyId, 1, 'latin1');

    const failures = [
      await decrypt(blob, { ...context, session: 'other-session' }),
      await decrypt(blob),
      await decrypt(blob, { ...context, extra: 'x' }),
      await decrypt(flipped(blob.length - 1)), // ciphertext body
      await decrypt(flipped(blob.length - 1), context),
      await decrypt(flipped(40), context), // IV
      await decrypt(flipped(60), context), // tag
      await decrypt(flipped(5), context), // key id
      await decrypt(flipped(0), context), // version
      await decrypt(swapped, context), // header points at another key
      await decrypt(blob.subarray(0, 20), context), // truncated
    ];
    for (const err of failures) {
      expect(err).toBeInstanceOf(InvalidCiphertextException);
      expect(err.name).toBe('InvalidCiphertextException');
      expect(metadata(err).httpStatusCode).toBe(400);
      expect(err.$fault).toBe('client');
    }

    // A ciphertext made under the other key: fine with its own key, rejected if the caller
    // pins our key (AWS answers IncorrectKeyException in that case).
    const other = await c.send(
      new EncryptCommand({
        KeyId: otherKeyArn,
        Plaintext: Buffer.from('hello'),
        EncryptionContext: context,
      }),
    );
    const ok = await c.send(
      new DecryptCommand({ CiphertextBlob: other.CiphertextBlob, EncryptionContext: context }),
    );
    expect(Buffer.from(ok.Plaintext ?? []).toString()).toBe('hello');
    expect(ok.KeyId).toBe(otherKeyArn);
    const pinned = await rejection(() =>
      c.send(
        new DecryptCommand({
          CiphertextBlob: other.CiphertextBlob,
          EncryptionContext: context,
          KeyId: 'alias/token-broker',
        }),
      ),
    );
    expect(pinned).toBeInstanceOf(IncorrectKeyException);
  });

  it('validates inputs and reports unknown keys like AWS', async () => {
    const c = client();
    const missing = await rejection(() =>
      c.send(new GenerateDataKeyCommand({ KeySpec: 'AES_256' } as never)),
    );
    expect(missing.name).toBe('ValidationException');
    expect(missing).toBeInstanceOf(KMSServiceException);
    expect(missing.message).toMatch(/keyId/);

    const both = await rejection(() =>
      c.send(new GenerateDataKeyCommand({ KeyId: keyArn, KeySpec: 'AES_256', NumberOfBytes: 32 })),
    );
    expect(both.name).toBe('ValidationException');
    const neither = await rejection(() => c.send(new GenerateDataKeyCommand({ KeyId: keyArn })));
    expect(neither.name).toBe('ValidationException');
    const tooMany = await rejection(() =>
      c.send(new GenerateDataKeyCommand({ KeyId: keyArn, NumberOfBytes: 1025 })),
    );
    expect(tooMany.name).toBe('ValidationException');

    for (const KeyId of ['alias/nope', '00000000-0000-0000-0000-000000000000', `${keyArn}x`]) {
      const err = await rejection(() =>
        c.send(new GenerateDataKeyCommand({ KeyId, KeySpec: 'AES_256' })),
      );
      expect(err).toBeInstanceOf(NotFoundException);
      expect(metadata(err).httpStatusCode).toBe(400);
    }

    const described = await c.send(new DescribeKeyCommand({ KeyId: 'alias/token-broker' }));
    expect(described.KeyMetadata?.Arn).toBe(keyArn);
    expect(described.KeyMetadata?.KeyState).toBe('Enabled');
    expect(described.KeyMetadata?.CreationDate).toBeInstanceOf(Date);
  });

  it('refuses a disabled key with DisabledException', async () => {
    const c = client();
    const arn = kms.createKey({ alias: 'alias/to-disable' });
    const gen = await c.send(
      new GenerateDataKeyCommand({ KeyId: arn, KeySpec: 'AES_256', EncryptionContext: context }),
    );
    kms.setKeyEnabled('alias/to-disable', false);
    const genErr = await rejection(() =>
      c.send(new GenerateDataKeyCommand({ KeyId: arn, KeySpec: 'AES_256' })),
    );
    expect(genErr).toBeInstanceOf(DisabledException);
    const decErr = await rejection(() =>
      c.send(
        new DecryptCommand({ CiphertextBlob: gen.CiphertextBlob, EncryptionContext: context }),
      ),
    );
    expect(decErr).toBeInstanceOf(DisabledException);
    expect(metadata(decErr).httpStatusCode).toBe(400);
    const described = await c.send(new DescribeKeyCommand({ KeyId: arn }));
    expect(described.KeyMetadata?.KeyState).toBe('Disabled');

    kms.setKeyEnabled(arn, true);
    const dec = await c.send(
      new DecryptCommand({ CiphertextBlob: gen.CiphertextBlob, EncryptionContext: context }),
    );
    expect(dec.KeyId).toBe(arn);
    expect(() => kms.setKeyEnabled('alias/nope', false)).toThrow(/unknown key/);
  });

  it('surfaces injected throttling, and the SDK retries it', async () => {
    const once = client({ maxAttempts: 1 });
    kms.resetCalls();
    kms.inject({ operation: 'GenerateDataKey', kind: 'throttle' });
    const err = await rejection(() =>
      once.send(new GenerateDataKeyCommand({ KeyId: keyArn, KeySpec: 'AES_256' })),
    );
    expect(err.name).toBe('ThrottlingException');
    expect(err).toBeInstanceOf(KMSServiceException);
    expect(err.message).toBe('Rate exceeded');
    expect(metadata(err).httpStatusCode).toBe(400);
    expect(kms.calls.GenerateDataKey).toBe(1);

    // Default retry strategy (3 attempts): one throttle is absorbed transparently.
    const retrying = client();
    kms.resetCalls();
    kms.inject({ operation: 'GenerateDataKey', kind: 'throttle' });
    const gen = await retrying.send(
      new GenerateDataKeyCommand({ KeyId: keyArn, KeySpec: 'AES_256' }),
    );
    expect(gen.$metadata.attempts).toBe(2);
    expect(kms.calls.GenerateDataKey).toBe(2);
  });

  it('maps internal, access-denied, disabled and delay faults; FIFO per operation', async () => {
    const once = client({ maxAttempts: 1 });
    kms.resetCalls();
    kms.inject({ operation: 'Decrypt', kind: 'internal' });
    kms.inject({ operation: 'Decrypt', kind: 'access-denied' });
    kms.inject({ operation: 'Decrypt', kind: 'disabled', times: 2 });
    const blob = (
      await once.send(new EncryptCommand({ KeyId: keyArn, Plaintext: Buffer.from('x') }))
    ).CiphertextBlob;
    const decrypt = () => once.send(new DecryptCommand({ CiphertextBlob: blob }));

    const internal = await rejection(decrypt);
    expect(internal).toBeInstanceOf(KMSInternalException);
    expect(internal.$fault).toBe('server');
    expect(metadata(internal).httpStatusCode).toBe(500);
    const denied = await rejection(decrypt);
    expect(denied.name).toBe('AccessDeniedException');
    expect(metadata(denied).httpStatusCode).toBe(400);
    expect(await rejection(decrypt)).toBeInstanceOf(DisabledException);
    expect(await rejection(decrypt)).toBeInstanceOf(DisabledException);
    expect(Buffer.from((await decrypt()).Plaintext ?? []).toString()).toBe('x');
    expect(kms.calls).toEqual({ Encrypt: 1, Decrypt: 5 });

    // Default retries: 500s are retried (fast base delay) until attempts run out;
    // AccessDenied is not retried.
    const retrying = client();
    kms.resetCalls();
    kms.inject({ operation: 'Decrypt', kind: 'internal', times: 3 });
    const exhausted = await rejection(() =>
      retrying.send(new DecryptCommand({ CiphertextBlob: blob })),
    );
    expect(exhausted).toBeInstanceOf(KMSInternalException);
    expect(metadata(exhausted).attempts).toBe(3);
    expect(kms.calls.Decrypt).toBe(3);
    kms.inject({ operation: 'Decrypt', kind: 'access-denied' });
    await rejection(() => retrying.send(new DecryptCommand({ CiphertextBlob: blob })));
    expect(kms.calls.Decrypt).toBe(4);

    kms.inject({ operation: 'Decrypt', kind: 'delay', ms: 150 });
    const started = Date.now();
    await once.send(new DecryptCommand({ CiphertextBlob: blob }));
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);

    kms.inject({ operation: '*', kind: 'throttle', times: 5 });
    kms.clearFaults();
    await once.send(new DecryptCommand({ CiphertextBlob: blob }));
    expect(() => kms.inject({ operation: 'Nope', kind: 'throttle' })).toThrow(/unknown operation/);
  });

  it('answers unknown operations and unsigned requests like AWS, and honours AWS_ENDPOINT_URL_KMS', async () => {
    kms.resetCalls();
    const res = await fetch(kms.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-amz-json-1.1',
        'x-amz-target': 'TrentService.ScheduleKeyDeletion',
        authorization: 'AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/kms/aws4_request',
      },
      body: '{}',
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ __type: 'UnknownOperationException' });
    expect(kms.calls.ScheduleKeyDeletion).toBe(1);

    const unsigned = await fetch(kms.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-amz-json-1.1',
        'x-amz-target': 'TrentService.DescribeKey',
      },
      body: JSON.stringify({ KeyId: keyArn }),
    });
    expect(unsigned.status).toBe(400);
    expect(unsigned.headers.get('x-amzn-errortype')).toBe('MissingAuthenticationTokenException');

    const saved = process.env.AWS_ENDPOINT_URL_KMS;
    process.env.AWS_ENDPOINT_URL_KMS = kms.url;
    try {
      const viaEnv = new KMSClient({ region, credentials });
      clients.push(viaEnv);
      const out = await viaEnv.send(new DescribeKeyCommand({ KeyId: 'alias/token-broker' }));
      expect(out.KeyMetadata?.Arn).toBe(keyArn);
    } finally {
      if (saved === undefined) delete process.env.AWS_ENDPOINT_URL_KMS;
      else process.env.AWS_ENDPOINT_URL_KMS = saved;
    }
  });
});

describe('Secrets Manager emulator through @aws-sdk/client-secrets-manager', () => {
  let sm: SecretsManagerEmulator;
  const clients: SecretsManagerClient[] = [];
  const client = (extra: Partial<SecretsManagerClientConfig> = {}): SecretsManagerClient => {
    const c = new SecretsManagerClient({ endpoint: sm.url, region, credentials, ...extra });
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    sm = await startSecretsManagerEmulator();
  });
  afterAll(async () => {
    for (const c of clients) c.destroy();
    await sm.close();
  });

  it('gets a secret by name, ARN and partial ARN', async () => {
    const c = client();
    const arn = sm.putSecret('token-broker/salesforce', '{"clientSecret":"s1"}');
    expect(arn).toMatch(
      /^arn:aws:secretsmanager:us-east-1:\d{12}:secret:token-broker\/salesforce-[A-Za-z0-9]{6}$/,
    );
    for (const SecretId of ['token-broker/salesforce', arn, arn.slice(0, -7)]) {
      const out = await c.send(new GetSecretValueCommand({ SecretId }));
      expect(out.ARN).toBe(arn);
      expect(out.Name).toBe('token-broker/salesforce');
      expect(out.SecretString).toBe('{"clientSecret":"s1"}');
      expect(out.VersionStages).toEqual(['AWSCURRENT']);
      expect(out.VersionId).toMatch(/^[0-9a-f-]{36}$/);
      expect(out.CreatedDate).toBeInstanceOf(Date);
      expect(Math.abs((out.CreatedDate?.getTime() ?? 0) - Date.now())).toBeLessThan(60_000);
    }
  });

  it('adds versions: the new one is AWSCURRENT, the old one AWSPREVIOUS', async () => {
    const c = client();
    const arn = sm.putSecret('rotating', 'v1');
    const v1 = await c.send(new GetSecretValueCommand({ SecretId: 'rotating' }));
    expect(sm.putSecret('rotating', 'v2')).toBe(arn);
    const v2 = await c.send(new GetSecretValueCommand({ SecretId: arn }));
    expect(v2.SecretString).toBe('v2');
    expect(v2.VersionId).not.toBe(v1.VersionId);

    const put = await c.send(new PutSecretValueCommand({ SecretId: arn, SecretString: 'v3' }));
    expect(put.VersionStages).toEqual(['AWSCURRENT']);
    expect(put.ARN).toBe(arn);
    const current = await c.send(new GetSecretValueCommand({ SecretId: 'rotating' }));
    expect(current.SecretString).toBe('v3');
    expect(current.VersionId).toBe(put.VersionId);
    const previous = await c.send(
      new GetSecretValueCommand({ SecretId: 'rotating', VersionStage: 'AWSPREVIOUS' }),
    );
    expect(previous.SecretString).toBe('v2');
    const first = await c.send(
      new GetSecretValueCommand({ SecretId: 'rotating', VersionId: v1.VersionId }),
    );
    expect(first.SecretString).toBe('v1');
    expect(first.VersionStages).toEqual([]);

    // Idempotent retry with the same ClientRequestToken; a different value is refused.
    const token = '11111111-2222-3333-4444-555555555555';
    const a = await c.send(
      new PutSecretValueCommand({
        SecretId: 'rotating',
        SecretString: 'v4',
        ClientRequestToken: token,
      }),
    );
    const b = await c.send(
      new PutSecretValueCommand({
        SecretId: 'rotating',
        SecretString: 'v4',
        ClientRequestToken: token,
      }),
    );
    expect(a.VersionId).toBe(token);
    expect(b.VersionId).toBe(token);
    const clash = await rejection(() =>
      c.send(
        new PutSecretValueCommand({
          SecretId: 'rotating',
          SecretString: 'v5',
          ClientRequestToken: token,
        }),
      ),
    );
    expect(clash).toBeInstanceOf(ResourceExistsException);

    const described = await c.send(new DescribeSecretCommand({ SecretId: 'rotating' }));
    expect(described.VersionIdsToStages).toEqual({
      [token]: ['AWSCURRENT'],
      [put.VersionId ?? '']: ['AWSPREVIOUS'],
    });
    expect(described.LastChangedDate).toBeInstanceOf(Date);
  });

  it('creates secrets, and reports missing ones as ResourceNotFoundException', async () => {
    const c = client();
    const created = await c.send(
      new CreateSecretCommand({ Name: 'created', SecretString: 'c1', Description: 'd' }),
    );
    expect(created.ARN).toMatch(/:secret:created-/);
    expect((await c.send(new GetSecretValueCommand({ SecretId: 'created' }))).SecretString).toBe(
      'c1',
    );
    expect(
      await rejection(() => c.send(new CreateSecretCommand({ Name: 'created' }))),
    ).toBeInstanceOf(ResourceExistsException);

    for (const SecretId of [
      'nope',
      'arn:aws:secretsmanager:us-east-1:000000000000:secret:nope-abcdef',
    ]) {
      const err = await rejection(() => c.send(new GetSecretValueCommand({ SecretId })));
      expect(err).toBeInstanceOf(ResourceNotFoundException);
      expect(metadata(err).httpStatusCode).toBe(400);
    }
    const badVersion = await rejection(() =>
      c.send(new GetSecretValueCommand({ SecretId: 'created', VersionStage: 'AWSPREVIOUS' })),
    );
    expect(badVersion).toBeInstanceOf(ResourceNotFoundException);
    const putMissing = await rejection(() =>
      c.send(new PutSecretValueCommand({ SecretId: 'nope', SecretString: 'x' })),
    );
    expect(putMissing).toBeInstanceOf(ResourceNotFoundException);
    const noValue = await rejection(() =>
      c.send(new PutSecretValueCommand({ SecretId: 'created' })),
    );
    expect(noValue).toBeInstanceOf(InvalidRequestException);
  });

  it('injects faults and counts every request', async () => {
    sm.putSecret('faulty', 'f');
    const once = client({ maxAttempts: 1 });
    const get = () => once.send(new GetSecretValueCommand({ SecretId: 'faulty' }));
    sm.resetCalls();
    sm.inject({ operation: 'GetSecretValue', kind: 'throttle' });
    sm.inject({ operation: 'GetSecretValue', kind: 'internal' });
    sm.inject({ operation: 'GetSecretValue', kind: 'access-denied' });
    sm.inject({ operation: 'GetSecretValue', kind: 'disabled' });

    const throttled = await rejection(get);
    expect(throttled.name).toBe('ThrottlingException');
    expect(throttled).toBeInstanceOf(SecretsManagerServiceException);
    const internal = await rejection(get);
    expect(internal).toBeInstanceOf(InternalServiceError);
    expect(metadata(internal).httpStatusCode).toBe(500);
    expect((await rejection(get)).name).toBe('AccessDeniedException');
    expect(await rejection(get)).toBeInstanceOf(InvalidRequestException);
    expect((await get()).SecretString).toBe('f');
    expect(sm.calls).toEqual({ GetSecretValue: 5 });

    // Default retries absorb a single 500.
    sm.resetCalls();
    sm.inject({ operation: 'GetSecretValue', kind: 'internal' });
    const retried = await client().send(new GetSecretValueCommand({ SecretId: 'faulty' }));
    expect(retried.$metadata.attempts).toBe(2);
    expect(sm.calls.GetSecretValue).toBe(2);
    sm.resetCalls();
    expect(sm.calls).toEqual({});
  });

  it('honours AWS_ENDPOINT_URL_SECRETS_MANAGER', async () => {
    sm.putSecret('via-env', 'e');
    const saved = process.env.AWS_ENDPOINT_URL_SECRETS_MANAGER;
    process.env.AWS_ENDPOINT_URL_SECRETS_MANAGER = sm.url;
    try {
      const viaEnv = new SecretsManagerClient({ region, credentials });
      clients.push(viaEnv);
      const out = await viaEnv.send(new GetSecretValueCommand({ SecretId: 'via-env' }));
      expect(out.SecretString).toBe('e');
    } finally {
      if (saved === undefined) delete process.env.AWS_ENDPOINT_URL_SECRETS_MANAGER;
      else process.env.AWS_ENDPOINT_URL_SECRETS_MANAGER = saved;
    }
  });

  it('closes cleanly while a delayed request is pending', async () => {
    const extra = await startSecretsManagerEmulator();
    extra.putSecret('slow', 's');
    extra.inject({ operation: 'GetSecretValue', kind: 'delay', ms: 5_000 });
    const c = new SecretsManagerClient({
      endpoint: extra.url,
      region,
      credentials,
      maxAttempts: 1,
    });
    clients.push(c);
    const pending = rejection(() => c.send(new GetSecretValueCommand({ SecretId: 'slow' })));
    await new Promise((r) => setTimeout(r, 50));
    const started = Date.now();
    await extra.close();
    await extra.close(); // idempotent
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(await pending).toBeInstanceOf(Error);
  });
});
