// A Node `ws` echo server for tests/ws_interop.rs: listens on a free
// loopback port with permessage-deflate, prints `port <n>`, echoes every
// message, and exits when its standard input closes.
const WebSocket = require('ws');

const wss = new WebSocket.WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: true, maxPayload: 1 << 22 });
wss.on('listening', () => console.log(`port ${wss.address().port}`));
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
