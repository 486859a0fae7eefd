import { fetchPost } from './fetchPost';
import { failures, type Runner } from './runner';

/**
 * Peer (a), naive: the global fetch per POST (Node's built-in client with its default dispatcher: keep-alive but no
 * limit on connections per endpoint), Promise.all over every record, no timeout, no deadline.
 */
export function naiveRunner(urls: string[]): Runner {
  return {
    id: 'naive',
    label: 'naive fetch',
    async handle(event) {
      const ids = await Promise.all(
        event.Records.map(async (record) => {
          try {
            JSON.parse(record.body);
            const oks = await Promise.all(urls.map((url) => fetchPost(url, record.body)));
            return oks.every(Boolean) ? undefined : record.messageId;
          } catch {
            return record.messageId;
          }
        }),
      );
      return failures(ids);
    },
    async close() {},
  };
}
