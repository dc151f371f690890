import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parsePrometheusText, sampleValue } from './prometheus-text.js';

const GOOD = `# HELP x_total Things.
# TYPE x_total counter
x_total{kind="a"} 3
x_total{kind="b \\"quoted\\" \\\\ and\\nnewline"} 4.5
# HELP lat_seconds Latency.
# TYPE lat_seconds histogram
lat_seconds_bucket{le="0.1"} 1
lat_seconds_bucket{le="+Inf"} 2
lat_seconds_sum 0.35
lat_seconds_count 2
# TYPE up gauge
up 1 1700000000000
`;

describe('Prometheus text reader', () => {
  it('reads families, their types, samples, labels with escapes and special values', () => {
    const f = parsePrometheusText(GOOD);
    assert.deepEqual([...f.keys()], ['x_total', 'lat_seconds', 'up']);
    assert.equal(f.get('lat_seconds')?.type, 'histogram');
    assert.equal(f.get('x_total')?.help, 'Things.');
    assert.equal(sampleValue(f, 'x_total', { kind: 'b "quoted" \\ and\nnewline' }), 4.5);
    assert.equal(sampleValue(f, 'lat_seconds_bucket', { le: '+Inf' }), 2);
    assert.equal(sampleValue(f, 'lat_seconds_count'), 2);
    assert.equal(sampleValue(f, 'up'), 1);
    assert.equal(sampleValue(f, 'x_total', { kind: 'c' }), undefined);
    assert.throws(() => sampleValue(f, 'x_total'), /2 samples x_total match \{\}/);
  });

  for (const [what, text, error] of [
    ['a sample of no declared family', 'stray 1\n', /line 1: sample stray belongs to no declared family/],
    ['a bad value', '# TYPE a gauge\na one\n', /line 2: bad value "one"/],
    ['an unquoted label', '# TYPE a gauge\na{k=v} 1\n', /line 2: bad labels \{k=v\}/],
    ['an unknown type', '# TYPE a meter\n', /line 1: unknown type "meter"/],
    ['a label given twice', '# TYPE a gauge\na{k="1",k="2"} 1\n', /line 2: label k twice/],
    ['a histogram sample without a suffix', '# TYPE h histogram\nh 1\n', /line 2: sample h belongs to no/],
    ['garbage', '# TYPE a gauge\n{} 1\n', /line 2: not a sample/],
  ] as const) {
    it(`refuses ${what}`, () => {
      assert.throws(() => parsePrometheusText(text), error);
    });
  }
});
