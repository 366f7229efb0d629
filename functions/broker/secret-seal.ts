import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';

const IV_BYTES = 12;
const TAG_BYTES = 16;

/**
 * Seals `plaintext` under a key derived from a one-time secret the client holds (the login
 * `state`, a broker code) with HKDF-SHA256, `info` naming the purpose, and AES-256-GCM with
 * `additionalData` (the secret's stored hash) bound in: the table, which keeps only that
 * hash, never yields the plaintext. Output: iv (12 bytes) | tag (16 bytes) | ciphertext.
 * @see https://www.rfc-editor.org/rfc/rfc5869
 */
export function sealUnderSecret(
  secret: string,
  seal: { info: string; additionalData: string },
  plaintext: string,
): Uint8Array {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', derivedKey(secret, seal.info), iv);
  cipher.setAAD(Buffer.from(seal.additionalData, 'utf8'));
  const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  return Buffer.concat([iv, cipher.getAuthTag(), body]);
}

/** Opens {@link sealUnderSecret}'s output; throws when the secret or the blob is not the one sealed. */
export function openUnderSecret(
  secret: string,
  seal: { info: string; additionalData: string },
  sealed: Uint8Array,
): string {
  const blob = Buffer.from(sealed);
  if (blob.length <= IV_BYTES + TAG_BYTES) throw new Error('sealed value too short');
  const decipher = createDecipheriv(
    'aes-256-gcm',
    derivedKey(secret, seal.info),
    blob.subarray(0, IV_BYTES),
  );
  decipher.setAAD(Buffer.from(seal.additionalData, 'utf8'));
  decipher.setAuthTag(blob.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
  return Buffer.concat([
    decipher.update(blob.subarray(IV_BYTES + TAG_BYTES)),
    decipher.final(),
  ]).toString('utf8');
}

function derivedKey(secret: string, info: string): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, '', info, 32));
}
