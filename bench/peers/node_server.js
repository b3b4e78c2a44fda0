// The Node peer of `bench http`: GET /hello/{name} -> "hello, <name>\n" from the peer
// hello module (hello.zig), a new WebAssembly.Instance per request (FRESH=1, default)
// or one instance reused (FRESH=0). The port is `--port N` (as the harness passes it)
// or PORT; the module is WASM.
const http = require("node:http");
const fs = require("node:fs");

const at = process.argv.indexOf("--port");
const PORT = Number(at > 0 ? process.argv[at + 1] : process.env.PORT);
const FRESH = process.env.FRESH !== "0";
const mod = new WebAssembly.Module(fs.readFileSync(process.env.WASM));
const shared = new WebAssembly.Instance(mod, {});
const enc = new TextEncoder();

function hello(instance, name) {
  const ex = instance.exports;
  const bytes = enc.encode(name);
  new Uint8Array(ex.memory.buffer, ex.in_ptr(), bytes.length).set(bytes);
  const n = ex.hello(bytes.length);
  return Buffer.from(new Uint8Array(ex.memory.buffer, ex.out_ptr(), n));
}

http
  .createServer((req, res) => {
    const name = decodeURIComponent(req.url.split("/")[2] || "world");
    const body = hello(FRESH ? new WebAssembly.Instance(mod, {}) : shared, name);
    res.writeHead(200, { "content-type": "text/plain; charset=utf-8", "content-length": body.length });
    res.end(body);
  })
  .listen(PORT, "127.0.0.1");
