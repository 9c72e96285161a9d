import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { assertBuilt } from './helpers/cli.js';
import { useTempDir } from './helpers/tmp.js';

// The parsing worker exists only as compiled JS, so this compares the two paths in the build.
const dist = '../dist/src/';
const { ingestFile } = (await import(`${dist}ingest/ingest.js`)) as typeof import('../src/ingest/ingest.js');
const { Store } = (await import(`${dist}store/store.js`)) as typeof import('../src/store/store.js');

const tempDir = useTempDir();

describe('file ingest on a worker thread', () => {
  it('gives the same summary and the same stored data as parsing in-thread', async () => {
    assertBuilt();
    const dir = tempDir();
    const file = join(dir, 'mixed.jsonl');
    const lines: string[] = [];
    for (let i = 0; i < 5000; i++) {
      if (i % 997 === 0) lines.push(`broken line ${i}`);
      else if (i % 10 === 0) lines.push(JSON.stringify({ type: 'event', ts: 1_700_000_000_000 + i, kind: 'log', component: `c${i % 3}`, message: `m${i}` }));
      else if (i % 10 === 1) lines.push(JSON.stringify({ type: 'span', trace_id: `t${i}`, span_id: 's', name: 'n', component: 'c1', start: 1_700_000_000_000 + i, duration_ms: i }));
      else {
        // m1 always in bytes, m2 in ms and then (in a later batch) in s, m0 and m3 without a unit
        const unit = i % 4 === 1 ? 'By' : i % 4 === 2 ? (i < 2500 ? 'ms' : 's') : undefined;
        lines.push(JSON.stringify({ type: 'metric', ts: 1_700_000_000_000 + i, name: `m${i % 4}`, value: i, component: `c${i % 3}`, labels: i % 2 ? { k: 'v' } : {}, unit }));
      }
    }
    writeFileSync(file, lines.join('\n'));

    const run = async (useWorker: boolean) => {
      const store = new Store(join(dir, `${useWorker}.db`));
      const summary = await ingestFile(store, file, { useWorker, batchSize: 700 });
      const series = store.findSeries({}).series.map((s) => ({ ...s, points: store.readPoints(s.id, 0, 2e12) }));
      const events = store.searchEvents({}, 10_000).events.map(({ id: _id, ...e }) => e);
      const spans = store.listSpans({}, 10_000);
      const components = store.listComponents();
      store.close();
      return { summary, series, events, spans, components };
    };
    const onWorker = await run(true);
    const inThread = await run(false);
    expect(onWorker.summary).toMatchObject({ accepted: 4994, rejected: 6, written: { metrics: 3996, events: 499, spans: 499 } });
    expect(onWorker.summary.errors.map((e) => e.line)).toEqual([1, 998, 1995, 2992, 3989, 4986]);
    expect(onWorker).toEqual(inThread);
    const units = new Map(onWorker.series.map((s) => [s.name, s.unit]));
    expect(Object.fromEntries(units)).toEqual({ m0: null, m1: 'By', m2: 's', m3: null });
  });

  it('reports an unreadable file instead of starting a worker', async () => {
    const store = new Store(join(tempDir(), 'kiwi.db'));
    await expect(ingestFile(store, '/nonexistent/file.jsonl')).rejects.toThrow(/file\.jsonl: cannot read \(ENOENT\)/);
    store.close();
  });
});
