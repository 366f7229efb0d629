/**
 * Lambda entry of the event publisher: the session table's stream (filtered to the writes
 * that make events) in, EventBridge `PutEvents` out (README "Events").
 */
import type { DynamoDBStreamHandler } from 'aws-lambda';
import { createPublisherHandler } from './aws/stream-publisher.ts';
import * as production from './production.ts';

const handle = createPublisherHandler({ bus: production.eventBus(), log: production.log() });

export const handler = ((event, context) => handle(event, context)) satisfies DynamoDBStreamHandler;
