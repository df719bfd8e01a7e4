"""A worker on the official Python iii-sdk 0.4.x (the asyncio ``III`` class), driven by
JSON lines on stdin. Same commands and replies as py_worker.py."""

import asyncio
import json
import sys

from iii import III, InitOptions

url, prefix = sys.argv[1], sys.argv[2]
replies, sys.stdout = sys.stdout, sys.stderr  # anything the SDK prints goes to stderr
counter = {"n": 0}


async def echo(data):
    return data


async def boom(data):
    raise ValueError("kaboom")


async def count(data):
    counter["n"] += 1
    return {"count": counter["n"]}


async def read_count(data):
    return {"count": counter["n"]}


async def sleepy(data):
    await asyncio.sleep(data["sleep_ms"] / 1000)
    return data


def reply(message):
    replies.write(json.dumps(message) + "\n")
    replies.flush()


async def main():
    iii = III(url, InitOptions(worker_name=prefix))
    for name, handler in (
        ("echo", echo),
        ("boom", boom),
        ("count", count),
        ("read_count", read_count),
        ("sleepy", sleepy),
    ):
        iii.register_function(f"{prefix}::{name}", handler)
    await iii.connect()
    reply({"event": "ready"})
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        command = json.loads(line)
        seq = command.get("seq")
        try:
            if command["op"] == "shutdown":
                await iii.shutdown()
                reply({"seq": seq, "ok": True, "result": None})
                return
            if command["op"] == "on_functions_available":

                def available(functions):
                    reply(
                        {
                            "event": "functions_available",
                            "functions": [f.function_id for f in functions],
                        }
                    )

                iii.on_functions_available(available)
                reply({"seq": seq, "ok": True, "result": None})
                continue
            if command["op"] == "void":
                iii.trigger_void(command["function_id"], command.get("data"))
                result = None
            else:
                timeout = (command.get("timeout_ms") or 30000) / 1000
                result = await iii.trigger(
                    command["function_id"], command.get("data"), timeout=timeout
                )
            reply({"seq": seq, "ok": True, "result": result})
        except Exception as error:  # P4 raises Exception(str(error_dict)) and TimeoutError
            reply(
                {
                    "seq": seq,
                    "ok": False,
                    "error": {"message": str(error), "type": type(error).__name__},
                }
            )


asyncio.run(main())
