import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../../lib/config/config';
import { createLanes, type LaneSender } from '../../../lib/lanes';

const send: LaneSender = async (messages) => ({ parked: messages.map(() => false), errors: [] });

describe('an endpoint’s lane schedule', () => {
  it('is its own retrySchedule, else LANE_RETRY_SCHEDULE, else the day-long default', () => {
    const document = {
      endpoints: [
        { name: 'own', url: 'https://own.example.com/in', retrySchedule: [7, 70] },
        { name: 'plain', url: 'https://plain.example.com/in' },
      ],
    };
    const env = { LANE_QUEUE_URL_PREFIX: 'https://sqs.us-east-1.amazonaws.com/123456789012/ingest-fanout-dev-lane-' };
    const short = createLanes(
      loadConfig({ ...env, LANE_RETRY_SCHEDULE: '1,5,30' }, { document, source: 'e.yml' }),
      send,
    );
    expect(short?.schedule('own')).toEqual([7, 70]);
    expect(short?.schedule('plain')).toEqual([1, 5, 30]);
    const day = createLanes(loadConfig(env, { document, source: 'e.yml' }), send);
    expect(day?.schedule('plain')).toEqual([5, 60, 300, 1800, 7200, 18000, 36000, 36000]);
  });
});
