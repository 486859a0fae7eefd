import {
  BatchGetItemCommand,
  type BatchGetItemCommandOutput,
  BatchWriteItemCommand,
  type BatchWriteItemCommandOutput,
  type DynamoDBClient,
  ScanCommand,
  waitUntilTableExists,
} from '@aws-sdk/client-dynamodb';
import { DeleteMessageBatchCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { SQSRecord } from 'aws-lambda';
import { type RedriveSummary, redrive } from '../../lib/redrive';
import { createLedger } from '../../lib/settle/ledger';
import type { Ledger } from '../../lib/types';
import {
  createLedgerTable,
  createQueue,
  type LocalQueue,
  localDynamoDb,
  localSqs,
  receiveAll,
  sendMessages,
  toLambdaRecord,
} from '../support/aws';
import type { ModelRecord, RecordSpec } from './scenario';
import { type Faults, HEALTHY, hang } from './sides';

/** Where the fuzz finds the local AWS servers (the suite's, or those `npm run fuzz` starts). */
export interface LocalAws {
  sqsEndpoint: string;
  dynamodbEndpoint: string;
}

/**
 * The real delivery ledger (lib/settle/ledger.ts) on its own dynalite table, its DynamoDB client failing as the invocation
 * says: a call that throws, one that hangs until aborted, or DynamoDB's own partial answer (half the keys or items
 * returned unprocessed, which the ledger retries).
 */
export class DynaliteLedger {
  faults: Faults = HEALTHY;
  readonly ledger: Ledger;

  private constructor(
    private readonly dynamodb: DynamoDBClient,
    private readonly table: string,
    endpoints: string[],
    ttlS: number,
  ) {
    this.ledger = createLedger(dynamodb, { table, endpoints, ttlS });
    const send = dynamodb.send.bind(dynamodb) as (command: unknown, options?: unknown) => Promise<unknown>;
    dynamodb.send = (async (command: unknown, options?: { abortSignal?: AbortSignal }) => {
      const fault =
        command instanceof BatchGetItemCommand
          ? this.faults.lookup
          : command instanceof BatchWriteItemCommand
            ? this.faults.record
            : 'ok';
      if (fault === 'hang') return hang(options?.abortSignal);
      if (fault === 'throw')
        throw Object.assign(new Error('Throughput exceeded'), { name: 'ProvisionedThroughputExceededException' });
      if (fault === 'partial') return this.#half(command as BatchGetItemCommand | BatchWriteItemCommand, send, options);
      return send(command, options);
    }) as DynamoDBClient['send'];
  }

  static async create(aws: LocalAws, endpoints: string[], ttlS: number): Promise<DynaliteLedger> {
    const dynamodb = localDynamoDb(aws.dynamodbEndpoint);
    const table = await createLedgerTable(dynamodb, 'fuzz-ledger');
    // dynalite answers CreateTable before the table is ACTIVE: a read that comes first is refused with a 400.
    await waitUntilTableExists({ client: dynamodb, maxWaitTime: 20, minDelay: 0.05 }, { TableName: table });
    return new DynaliteLedger(dynamodb, table, endpoints, ttlS);
  }

  /** Sends the first half of the keys (items), answering the rest unprocessed, as a throttled DynamoDB does. */
  async #half(
    command: BatchGetItemCommand | BatchWriteItemCommand,
    send: (command: unknown, options?: unknown) => Promise<unknown>,
    options: unknown,
  ): Promise<unknown> {
    const table = this.table;
    if (command instanceof BatchGetItemCommand) {
      const request = command.input.RequestItems![table]!;
      const keys = request.Keys ?? [];
      const kept = keys.slice(0, Math.ceil(keys.length / 2));
      const answer = (await send(
        new BatchGetItemCommand({ RequestItems: { [table]: { ...request, Keys: kept } } }),
        options,
      )) as BatchGetItemCommandOutput;
      const rest = keys.slice(kept.length);
      return rest.length ? { ...answer, UnprocessedKeys: { [table]: { ...request, Keys: rest } } } : answer;
    }
    const requests = command.input.RequestItems![table]!;
    const kept = requests.slice(0, Math.ceil(requests.length / 2));
    const answer = (await send(
      new BatchWriteItemCommand({ RequestItems: { [table]: kept } }),
      options,
    )) as BatchWriteItemCommandOutput;
    const rest = requests.slice(kept.length);
    return rest.length ? { ...answer, UnprocessedItems: { [table]: rest } } : answer;
  }

  /** Key → endpoints, as the table holds them now (read past the faults). */
  async snapshot(): Promise<Map<string, Set<string>>> {
    const entries = new Map<string, Set<string>>();
    let start: Record<string, never> | undefined;
    do {
      const page = await this.dynamodb.send(
        new ScanCommand({ TableName: this.table, ...(start ? { ExclusiveStartKey: start } : {}) }),
      );
      for (const item of page.Items ?? []) {
        const id = item.id?.S ?? '';
        const at = id.lastIndexOf('#');
        const key = id.slice(0, at);
        entries.set(key, (entries.get(key) ?? new Set()).add(id.slice(at + 1)));
      }
      start = page.LastEvaluatedKey as Record<string, never> | undefined;
    } while (start);
    return entries;
  }

  close(): void {
    this.dynamodb.destroy();
  }
}

/**
 * The source queue's dead-letter queue on local SQS: records reported failed too often are dead-lettered there (as
 * SQS does after maxReceiveCount), and lib/redrive moves them back to the source queue, from which the next
 * invocation receives them as new messages.
 */
export class DeadLetters {
  /** Bodies dead-lettered and not yet redriven. */
  readonly waiting: string[] = [];
  /** What each body dead-lettered stands for. */
  readonly specs = new Map<string, RecordSpec>();

  private constructor(
    private readonly sqs: SQSClient,
    readonly source: LocalQueue,
    readonly dlq: LocalQueue,
  ) {}

  static async create(aws: LocalAws): Promise<DeadLetters> {
    const sqs = localSqs(aws.sqsEndpoint);
    const dlq = await createQueue(sqs, 'fuzz-dlq');
    const source = await createQueue(sqs, 'fuzz-source', {
      attributes: { RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlq.arn, maxReceiveCount: 1 }) },
    });
    return new DeadLetters(sqs, source, dlq);
  }

  async deadLetter(items: ModelRecord[]): Promise<void> {
    if (items.length === 0) return;
    await sendMessages(
      this.sqs,
      this.dlq.url,
      items.map((item) => ({ body: item.record.body })),
    );
    for (const item of items) {
      this.waiting.push(item.record.body);
      this.specs.set(item.record.body, item.spec);
    }
  }

  /** Redrives the DLQ back to the source queue, then receives (and deletes) what arrived there, as Lambda would. */
  async redrive(): Promise<{ summary: RedriveSummary; records: SQSRecord[]; expected: string[] }> {
    const expected = this.waiting.splice(0);
    const summary = await redrive(this.sqs, {
      from: this.dlq.url,
      to: this.source.url,
      method: 'loop',
      emptyWaitS: 1,
      clockOffsetMs: 0,
      visibilityTimeoutS: 30,
    });
    const messages = await receiveAll(this.sqs, this.source.url);
    for (let at = 0; at < messages.length; at += 10) {
      const entries = messages
        .slice(at, at + 10)
        .map((message, i) => ({ Id: String(i), ReceiptHandle: message.ReceiptHandle }));
      await this.sqs.send(new DeleteMessageBatchCommand({ QueueUrl: this.source.url, Entries: entries }));
    }
    return { summary, records: messages.map((message) => toLambdaRecord(message, this.source.arn)), expected };
  }

  close(): void {
    this.sqs.destroy();
  }
}
