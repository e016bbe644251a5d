// Runs the real MicroPython VM (WebAssembly port) for offhook's Python side.
//
// Protocol: one JSON request per line on stdin, one JSON reply per line on stdout.
//   {"id": 1, "op": "load", "heapsize": 194560}     fresh VM (clean heap and filesystem)
//   {"id": 2, "op": "put", "files": {"/lib/x.py": "<base64>"}}
//   {"id": 3, "op": "run", "code": "print(1)", "async": false}
//   {"id": 4, "op": "heap"}
// Each reply: {"id", "ok", "stdout", "error", "heap_total", "heap_initial"}.
// Python's print() output is captured per request, so it never mixes with replies.
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";
import { createInterface } from "node:readline";

let mp = null;
let captured = [];
let heapInitial = 0;

function heapTotal() {
  // The pyscript build grows its heap on demand ("split heap"): a total above
  // the initial size means the code would have hit MemoryError on the board.
  const saved = captured;
  captured = [];
  mp.runPython("import micropython\nmicropython.mem_info()");
  const text = Buffer.concat(captured).toString();
  captured = saved;
  const match = /GC: total: (\d+)/.exec(text);
  return match ? Number(match[1]) : -1;
}

function pythonError(err) {
  // PythonError.message is the traceback text; other errors carry the whole
  // minified module source in their stack, which we keep out of replies.
  if (err && err.constructor && err.constructor.name === "PythonError") return String(err.message);
  return `${err && err.name}: ${err && err.message}`;
}

function mkdirs(path) {
  const parts = path.split("/").filter(Boolean);
  parts.pop();
  let current = "";
  for (const part of parts) {
    current += "/" + part;
    try {
      mp.FS.mkdir(current);
    } catch {
      // already exists
    }
  }
}

async function handle(request) {
  switch (request.op) {
    case "load": {
      captured = [];
      mp = await loadMicroPython({
        stdout: (bytes) => captured.push(Buffer.from(bytes)),
        linebuffer: false,
        heapsize: request.heapsize || 194560,
      });
      mp.runPython("import sys\nif '/lib' not in sys.path: sys.path.insert(0, '/lib')\nif '/' not in sys.path: sys.path.insert(0, '/')");
      heapInitial = heapTotal();
      return {};
    }
    case "put": {
      for (const [path, data] of Object.entries(request.files)) {
        mkdirs(path);
        mp.FS.writeFile(path, Buffer.from(data, "base64"));
      }
      return {};
    }
    case "run": {
      captured = [];
      let error = null;
      try {
        if (request.async) await mp.runPythonAsync(request.code);
        else mp.runPython(request.code);
      } catch (err) {
        error = pythonError(err);
      }
      const stdout = Buffer.concat(captured).toString();
      captured = [];
      return { stdout, error };
    }
    case "heap":
      return {};
    default:
      throw new Error(`unknown op ${request.op}`);
  }
}

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of lines) {
  if (!line.trim()) continue;
  let request = {};
  let reply;
  try {
    request = JSON.parse(line);
    reply = { ok: true, ...(await handle(request)) };
    if (mp) {
      reply.heap_total = heapTotal();
      reply.heap_initial = heapInitial;
    }
  } catch (err) {
    reply = { ok: false, error: pythonError(err) };
  }
  reply.id = request.id;
  process.stdout.write(JSON.stringify(reply) + "\n");
}
