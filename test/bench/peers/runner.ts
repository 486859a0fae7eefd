import type { Context, SQSBatchResponse, SQSEvent } from 'aws-lambda';

/** Anything that answers an SQS batch: the handler, a peer or the floor. */
export interface Runner {
  /** Short id used on the command line and in results JSON. */
  id: string;
  label: string;
  handle(event: SQSEvent, context: Context): Promise<SQSBatchResponse>;
  close(): Promise<void>;
}

export const CONTENT_TYPE = 'application/cloudevents+json; charset=utf-8';
export const USER_AGENT = 'ingest-fanout-bench/1';

export function failures(ids: (string | undefined)[]): SQSBatchResponse {
  return {
    batchItemFailures: ids.filter((id): id is string => id !== undefined).map((id) => ({ itemIdentifier: id })),
  };
}
