import {
  type AttributeValue,
  ConditionalCheckFailedException,
  type DynamoDBClient,
  PutItemCommand,
} from '@aws-sdk/client-dynamodb';
import type { CallOptions } from '../broker/ports.ts';
import { awsUnavailable } from './errors.ts';

/**
 * Sends one DynamoDB command for a store adapter. A deadline from the domain (the time
 * left in a lease or an invocation) aborts the call, SDK retries included; the per-attempt
 * timeouts are in the client's own configuration. `ConditionalCheckFailedException` is
 * rethrown for the adapter to turn into a domain outcome; every other failure becomes
 * `TemporarilyUnavailableError` with the cause kept.
 */
export async function sendDynamoDb(
  client: DynamoDBClient,
  // biome-ignore lint/suspicious/noExplicitAny: one typed send for every command keeps the error translation in one place
  command: { input: any },
  options?: CallOptions,
  // biome-ignore lint/suspicious/noExplicitAny: see above
): Promise<any> {
  try {
    return await client.send(
      // biome-ignore lint/suspicious/noExplicitAny: see above
      command as any,
      options?.timeoutMs === undefined
        ? {}
        : { abortSignal: AbortSignal.timeout(Math.max(1, options.timeoutMs)) },
    );
  } catch (error) {
    if (error instanceof ConditionalCheckFailedException) throw error;
    throw awsUnavailable('DynamoDB', error);
  }
}

/**
 * `PutItem` only where no item has the key (`attribute_not_exists(pk)`): false when one
 * does. A put that landed with its answer lost also answers false on the SDK's retry, so a
 * caller that must tell the two apart reads the item back and looks for its own write.
 */
export async function putIfAbsent(
  client: DynamoDBClient,
  tableName: string,
  item: Record<string, AttributeValue>,
  options?: CallOptions,
): Promise<boolean> {
  try {
    await sendDynamoDb(
      client,
      new PutItemCommand({
        TableName: tableName,
        Item: item,
        ConditionExpression: 'attribute_not_exists(pk)',
      }),
      options,
    );
    return true;
  } catch (error) {
    if (error instanceof ConditionalCheckFailedException) return false;
    throw error;
  }
}
