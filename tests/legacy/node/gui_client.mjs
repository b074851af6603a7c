// A client that behaves like the DynaLauncher desktop GUI (front-dynalauncher 1.0.9) towards
// a server's /socket.io/ endpoint (dynalauncher-protocol.md §1.6, §2, §9.1):
//   socket.io-client 4.x, websocket transport only, no auth, autoConnect off; one combined
//   json-rpc-2.0 server+client; requests are `send` (event "message") of a JSON string, ids
//   from 1, params by name; answers and notifications arrive as JSON strings on "message".
// Driven by pytest (tests/legacy/test_gui_clients.py): one JSON command per stdin line,
//   {"op":"call","tag":T,"method":M[,"params":P]} | {"op":"connect"} | {"op":"close"}
// and one JSON line per thing seen on stdout:
//   ready | sent {request} | connect | connect_error | disconnect | ping
//   | message {data} (every parsed "message" argument) | unparsable {text}
//   | result {tag, result} | error {tag, code, message, data}
// Requests made before "connect" are buffered by socket.io-client and flushed after CONNECT,
// exactly like the GUI's mount-time burst.
import readline from "node:readline";
import { JSONRPCClient, JSONRPCServer, JSONRPCServerAndClient } from "json-rpc-2.0";
import { io } from "socket.io-client";

const url = process.argv[2];
const emit = (kind, fields = {}) =>
  process.stdout.write(JSON.stringify({ kind, t: Date.now(), ...fields }) + "\n");

const socket = io(url, { autoConnect: false, transports: ["websocket"], reconnection: false });
const rpc = new JSONRPCServerAndClient(
  new JSONRPCServer(),
  new JSONRPCClient((request) => {
    emit("sent", { request });
    socket.send(JSON.stringify(request));
  }),
);
// The GUI's notification handlers (Socket.jsx); what they receive is reported through "message".
for (const name of ["addJob", "update_data", "appendToShell", "removeShell", "setQueue"]) {
  rpc.addMethod(name, () => {});
}

socket.on("message", (text) => {
  if (typeof text !== "string") {
    emit("unparsable", { text: String(text), type: typeof text });
    return;
  }
  let data;
  try {
    data = JSON.parse(text);
  } catch {
    emit("unparsable", { text });
    return;
  }
  emit("message", { data });
  rpc.receiveAndSend(data).catch((err) => emit("rpc_error", { message: String(err) }));
});
socket.on("connect", () => emit("connect", { sid: socket.id }));
socket.on("connect_error", (err) => emit("connect_error", { message: err.message }));
socket.on("disconnect", (reason) => emit("disconnect", { reason }));
socket.io.on("ping", () => emit("ping"));

const lines = readline.createInterface({ input: process.stdin });
lines.on("line", (line) => {
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch {
    emit("bad_command", { line });
    return;
  }
  if (cmd.op === "call") {
    rpc.request(cmd.method, cmd.params).then(
      (result) => emit("result", { tag: cmd.tag, result: result === undefined ? null : result }),
      (error) =>
        emit("error", { tag: cmd.tag, code: error.code, message: error.message, data: error.data ?? null }),
    );
  } else if (cmd.op === "connect") {
    socket.connect();
  } else if (cmd.op === "close") {
    socket.disconnect();
    emit("closed");
    setTimeout(() => process.exit(0), 20);
  }
});
lines.on("close", () => {
  socket.disconnect();
  process.exit(0);
});
emit("ready", { url });
