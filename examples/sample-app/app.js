// The tutorial's front end. It asks Unleash (through the official Node SDK, with a backend
// token) whether EnableStaticContent is on: off -> its own page, on -> the static fallback
// page in static/index.html (standing in for the CDN copy).
//
// Settings (environment):
//   PORT                 listen port on 127.0.0.1 (default 3000)
//   UNLEASH_URL          Unleash API base, e.g. http://127.0.0.1:4242/api
//   UNLEASH_TOKEN        backend token (Unleash 8 refuses admin tokens and PATs here)
//   UNLEASH_REFRESH_MS   how often the SDK fetches flags (default 1000)
//   ERRORS               "1": the own page answers 500 from the start
//
// Routes:
//   GET  /               the page
//   GET  /flag           what the SDK currently sees: {"flag", "enabled", "synchronized"}
//   GET  /metrics        Prometheus text: http_requests_total{route,code}
//   GET  /health         200 once the SDK has fetched the flags
//   POST /admin/errors?on=1|0   make the own page answer 500 (the tutorial's error load)
'use strict';

const http = require('node:http');
const fs = require('node:fs');
const path = require('node:path');
const { initialize } = require('unleash-client');

const FLAG = 'EnableStaticContent';
const port = Number(process.env.PORT || 3000);
const refreshInterval = Number(process.env.UNLEASH_REFRESH_MS || 1000);
const staticPage = fs.readFileSync(path.join(__dirname, 'static', 'index.html'));
const ownPage = Buffer.from(`<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Website</title></head>
<body style="font-family: sans-serif; background: #e3f2fd">
  <h1>Website</h1>
  <p data-page="own">Welcome to the shop (served by the application).</p>
</body>
</html>
`);

let errors = process.env.ERRORS === '1';
let synchronized = false;

const unleash = initialize({
  url: process.env.UNLEASH_URL,
  appName: 'website-front-end',
  customHeaders: { Authorization: process.env.UNLEASH_TOKEN || '' },
  refreshInterval,
  metricsInterval: 60000,
});
unleash.on('synchronized', () => {
  synchronized = true;
});
unleash.on('error', (e) => console.error(`unleash: ${e.message}`));

// Requests by route and status code; routes are a fixed set, so the labels stay bounded.
const ROUTES = ['/', '/flag', '/metrics', '/health', '/admin/errors', 'other'];
const counts = new Map();
function count(route, code) {
  const key = `${route}\u0000${code}`;
  counts.set(key, (counts.get(key) || 0) + 1);
}
// Both series of the page exist from the start, so that a rate over them is defined.
counts.set('/\u0000200', 0);
counts.set('/\u0000500', 0);

function metrics() {
  const lines = [
    '# HELP http_requests_total HTTP requests answered, by route and status code.',
    '# TYPE http_requests_total counter',
  ];
  for (const [key, n] of [...counts.entries()].sort()) {
    const [route, code] = key.split('\u0000');
    lines.push(`http_requests_total{route="${route}",code="${code}"} ${n}`);
  }
  lines.push('# HELP feature_flag_enabled Whether the SDK sees the flag on (1) or off (0).');
  lines.push('# TYPE feature_flag_enabled gauge');
  lines.push(`feature_flag_enabled{flag="${FLAG}"} ${unleash.isEnabled(FLAG) ? 1 : 0}`);
  return lines.join('\n') + '\n';
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://localhost');
  const route = ROUTES.includes(url.pathname) ? url.pathname : 'other';
  const send = (code, type, body, extra = {}) => {
    count(route, code);
    res.writeHead(code, { 'Content-Type': type, ...extra });
    res.end(body);
  };
  if (route === '/' && req.method === 'GET') {
    if (unleash.isEnabled(FLAG)) {
      return send(200, 'text/html; charset=utf-8', staticPage, { 'X-Page': 'static' });
    }
    if (errors) {
      return send(500, 'text/plain; charset=utf-8', 'Internal Server Error\n', { 'X-Page': 'own' });
    }
    return send(200, 'text/html; charset=utf-8', ownPage, { 'X-Page': 'own' });
  }
  if (route === '/flag' && req.method === 'GET') {
    const body = JSON.stringify({ flag: FLAG, enabled: unleash.isEnabled(FLAG), synchronized });
    return send(200, 'application/json', body + '\n');
  }
  if (route === '/metrics' && req.method === 'GET') {
    return send(200, 'text/plain; version=0.0.4', metrics());
  }
  if (route === '/health' && req.method === 'GET') {
    return synchronized
      ? send(200, 'text/plain', 'ok\n')
      : send(503, 'text/plain', 'waiting for the first flag fetch from Unleash\n');
  }
  if (route === '/admin/errors' && req.method === 'POST') {
    const on = url.searchParams.get('on');
    if (on !== '0' && on !== '1') {
      return send(400, 'text/plain', 'use ?on=1 or ?on=0\n');
    }
    errors = on === '1';
    return send(200, 'application/json', JSON.stringify({ errors }) + '\n');
  }
  return send(404, 'text/plain', 'not found\n');
});

server.listen(port, '127.0.0.1', () => {
  console.log(`sample app on http://127.0.0.1:${port}/ (Unleash ${process.env.UNLEASH_URL}, refresh ${refreshInterval} ms)`);
});

function stop() {
  unleash.destroy();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
