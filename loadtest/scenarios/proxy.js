// proxy.js: a fixed request rate (the open model) of GETs at one URL, for measuring
// Portcullis against the backend it fronts. Run by loadtest/runner, or by hand:
//
//   k6 run --no-usage-report -e TARGET=http://127.0.0.1:8080/ -e RATE=2000 \
//       -e DURATION=20s -e SUMMARY=/tmp/summary.json loadtest/scenarios/proxy.js
//
// Environment:
//   TARGET    URL to GET (required; only loopback addresses are load-tested here)
//   RATE      requests started per second (default 2000)
//   DURATION  how long to keep that rate (default 20s)
//   VUS       pre-allocated VUs (default: enough for 100 ms latency at RATE)
//   MAX_VUS   VU ceiling (default: enough for 500 ms latency at RATE)
//   SUMMARY   where handleSummary writes the full summary as JSON (optional)

import http from 'k6/http';
import { check } from 'k6';

const target = __ENV.TARGET;
if (!target) {
  throw new Error('TARGET is not set: pass -e TARGET=http://127.0.0.1:8080/');
}

function positiveInt(name, fallback) {
  const raw = __ENV[name];
  if (raw === undefined || raw === '') {
    return fallback;
  }
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) {
    throw new Error(`${name}=${raw}: want a positive integer`);
  }
  return n;
}

const rate = positiveInt('RATE', 2000);
const duration = __ENV.DURATION || '20s';

// With an arrival rate, the VUs in flight are rate x latency (Little's law). The
// pre-allocated pool covers 100 ms of latency at RATE: far above a healthy proxy on
// loopback, but a shared 2-core machine stalls for tens of ms now and then (k6
// included), and a request whose start time comes while no VU is free is not sent at
// all (dropped_iterations), which would quietly lighten the load exactly when the
// target is slow. The ceiling (500 ms) lets k6 add VUs for a slower target; drops
// beyond it are reported, never hidden. A VU of this script costs well under a megabyte.
const preAllocatedVUs = positiveInt('VUS', Math.max(50, Math.ceil(rate / 10)));
const maxVUs = Math.max(preAllocatedVUs, positiveInt('MAX_VUS', Math.max(200, Math.ceil(rate / 2))));

export const options = {
  // The runner reads these off the summary; 'med' is the p50.
  summaryTrendStats: ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)'],
  // k6 does not read the bodies for the check, and reading them would put the load
  // generator's own work into the latency of larger responses.
  discardResponseBodies: true,
  scenarios: {
    proxy: {
      // Open model: requests start on a clock, not when the previous one returns, so a
      // stall in the target delays many requests and all of them are measured
      // (a closed loop would wait out the stall and under-count it: coordinated omission).
      executor: 'constant-arrival-rate',
      rate: rate,
      timeUnit: '1s',
      duration: duration,
      preAllocatedVUs: preAllocatedVUs,
      maxVUs: maxVUs,
      gracefulStop: '5s',
    },
  },
  thresholds: {
    // Over 1% failed requests (or failed checks) fails the run: k6 exits 99.
    http_req_failed: ['rate<0.01'],
    checks: ['rate>0.99'],
  },
};

export default function () {
  const res = http.get(target, { timeout: '10s' });
  check(res, { 'status is 200': (r) => r.status === 200 });
}

// handleSummary replaces k6's end-of-test text, so it prints one line of its own and
// writes the whole summary object (k6's own format) for the runner to parse.
export function handleSummary(data) {
  const m = data.metrics;
  const d = (m.http_req_duration && m.http_req_duration.values) || {};
  const reqs = (m.http_reqs && m.http_reqs.values) || {};
  const failed = (m.http_req_failed && m.http_req_failed.values) || {};
  const dropped = (m.dropped_iterations && m.dropped_iterations.values.count) || 0;
  const ms = (v) => (v === undefined ? '-' : v.toFixed(2));
  const line =
    `${target}: ${reqs.count || 0} requests, ${(reqs.rate || 0).toFixed(1)}/s, ` +
    `p50 ${ms(d.med)} ms, p95 ${ms(d['p(95)'])} ms, p99 ${ms(d['p(99)'])} ms, ` +
    `failed ${((failed.rate || 0) * 100).toFixed(2)}%, dropped ${dropped}\n`;
  const out = { stdout: line };
  if (__ENV.SUMMARY) {
    out[__ENV.SUMMARY] = JSON.stringify(data, null, 1);
  }
  return out;
}
