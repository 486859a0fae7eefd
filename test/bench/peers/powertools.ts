import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import type { SQSRecord } from 'aws-lambda';
import { fetchPost } from './fetchPost';
import type { Runner } from './runner';

/**
 * Peer (b): Powertools' BatchProcessor with its defaults (processPartialResponse, records in parallel) and the global
 * fetch per POST in the record handler; a record fails unless every endpoint answered 2xx.
 */
export function powertoolsRunner(urls: string[]): Runner {
  const processor = new BatchProcessor(EventType.SQS);
  const recordHandler = async (record: SQSRecord): Promise<void> => {
    JSON.parse(record.body);
    const oks = await Promise.all(urls.map((url) => fetchPost(url, record.body)));
    if (!oks.every(Boolean)) throw new Error(`record ${record.messageId}: an endpoint did not answer 2xx`);
  };
  return {
    id: 'powertools',
    label: 'Powertools BatchProcessor',
    handle: (event, context) => processPartialResponse(event, recordHandler, processor, { context }),
    async close() {},
  };
}
