// A Node `ws` client for tests/ws_interop.rs: sends the interop messages to
// the server at argv[2], checks each echo, closes with 1000, prints `ok`.
const WebSocket = require('ws');

const messages = ['hello', 'κόσμε €'.repeat(100), ''];
for (const n of [0, 125, 126, 65536, 200000]) {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = i % 251;
  messages.push(b);
}

const ws = new WebSocket(process.argv[2], { perMessageDeflate: true, maxPayload: 1 << 22 });
const timer = setTimeout(() => { console.log('timeout'); process.exit(1); }, 10000);
let i = 0;
ws.on('open', () => ws.send(messages[0]));
ws.on('message', (data, isBinary) => {
  const want = messages[i];
  const same = typeof want === 'string'
    ? !isBinary && data.toString('utf8') === want
    : isBinary && Buffer.compare(data, want) === 0;
  if (!same) { console.log(`echo ${i} differs`); process.exit(1); }
  i += 1;
  if (i < messages.length) ws.send(messages[i]); else ws.ping('interop');
});
ws.on('pong', (data) => {
  if (data.toString() !== 'interop') { console.log('bad pong'); process.exit(1); }
  ws.close(1000, 'done');
});
ws.on('close', (code) => {
  clearTimeout(timer);
  if (code !== 1000 || i !== messages.length) { console.log(`closed ${code} after ${i}`); process.exit(1); }
  console.log('ok');
});
ws.on('error', (e) => { console.log(`error ${e.message}`); process.exit(1); });
