"""A worker on the official Python iii-sdk (0.9 and later: register_worker), driven by
JSON lines on stdin.

Run with the SDK's own venv: ``python py_worker.py ws://127.0.0.1:PORT PREFIX``.
Registers PREFIX::echo, PREFIX::boom, PREFIX::count and PREFIX::read_count, prints
{"event": "ready"}, then answers one line per command:
{"op": "call", "function_id", "data", "timeout_ms"?} | {"op": "void", ...} | {"op": "shutdown"}
with {"seq", "ok": true, "result"} or {"seq", "ok": false, "error": {code, message, ...}}.
"""

import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from iii import InitOptions, TriggerAction, register_worker

try:
    from iii import InvocationError
except ImportError:  # 0.11.x names it IIIInvocationError
    from iii import IIIInvocationError as InvocationError

url, prefix = sys.argv[1], sys.argv[2]
# Replies own stdout; anything the SDK prints goes to stderr.
replies, sys.stdout = sys.stdout, sys.stderr
counter = {"n": 0}
lock = threading.Lock()


def echo(data):
    return data


def boom(data):
    raise ValueError("kaboom")


def count(data):
    with lock:
        counter["n"] += 1
        return {"count": counter["n"]}


def read_count(data):
    return {"count": counter["n"]}


def sleepy(data):
    time.sleep(data["sleep_ms"] / 1000)
    return data


def reply(message):
    replies.write(json.dumps(message) + "\n")
    replies.flush()


iii = register_worker(url, InitOptions(worker_name=prefix))
for name, handler in (
    ("echo", echo),
    ("boom", boom),
    ("count", count),
    ("read_count", read_count),
    ("sleepy", sleepy),
):
    iii.register_function(f"{prefix}::{name}", handler)
reply({"event": "ready"})

triggers = {}


def call(function_id, data, timeout_ms=None):
    request = {"function_id": function_id, "payload": data}
    if timeout_ms:
        request["timeout_ms"] = timeout_ms
    return iii.trigger(request)


for line in sys.stdin:
    command = json.loads(line)
    seq = command.get("seq")
    try:
        if command["op"] == "shutdown":
            iii.shutdown()
            reply({"seq": seq, "ok": True, "result": None})
            break
        if command["op"] == "register_trigger":
            handle = iii.register_trigger(
                {
                    "type": command["trigger_type"],
                    "function_id": command["function_id"],
                    "config": command["config"],
                }
            )
            key = str(len(triggers) + 1)
            triggers[key] = handle
            reply({"seq": seq, "ok": True, "result": {"handle": key}})
            continue
        if command["op"] == "unregister_trigger":
            triggers[command["handle"]].unregister()
            reply({"seq": seq, "ok": True, "result": None})
            continue
        if command["op"] == "channel_fill":
            # A14: create a channel, let another worker fill it, read everything back.
            import asyncio

            from iii.helpers import create_channel

            channel = create_channel(iii)
            messages = []
            channel.reader.on_message(messages.append)
            ref = channel.writer_ref
            ref = ref.model_dump() if hasattr(ref, "model_dump") else dict(vars(ref))
            call(command["function_id"], {"out": ref, "bytes": command["bytes"]})
            data = asyncio.run(channel.reader.read_all())
            result = {"bytes": len(data), "values": sorted(set(data)), "messages": messages}
            reply({"seq": seq, "ok": True, "result": result})
            continue
        if command["op"] == "call_many":
            function_id, datas = command["function_id"], command["datas"]
            with ThreadPoolExecutor(len(datas)) as pool:
                results = list(pool.map(call, [function_id] * len(datas), datas))
            reply({"seq": seq, "ok": True, "result": results})
            continue
        request = {"function_id": command["function_id"], "payload": command.get("data")}
        if command.get("timeout_ms"):
            request["timeout_ms"] = command["timeout_ms"]
        if command["op"] == "void":
            request["action"] = TriggerAction.Void()
        elif command["op"] == "enqueue":
            request["action"] = TriggerAction.Enqueue(queue=command["queue"])
        reply({"seq": seq, "ok": True, "result": iii.trigger(request)})
    except InvocationError as error:
        body = {"code": error.code, "message": error.message, "stacktrace": error.stacktrace}
        reply({"seq": seq, "ok": False, "error": {**body, "type": type(error).__name__}})
    except Exception as error:  # reported, never a crash
        reply(
            {
                "seq": seq,
                "ok": False,
                "error": {"message": str(error), "type": type(error).__name__},
            }
        )
