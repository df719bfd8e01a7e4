// A controlled worker on an official npm iii-sdk, driven by JSON lines on stdin: the same
// command line, commands, replies and events as py_worker.py (read its docstring).
//
//   node node_worker.mjs --sdk-dir .deps/node-iii-sdk-0.22.1 --url ws://127.0.0.1:PORT --name NAME
//       [--bare] [--invocation-timeout-ms N]
//
// (`III_SDK_DIR=<dir> node node_worker.mjs URL NAME` works too.) The SDK is loaded from the
// given folder's node_modules. Two API generations are covered: `init` (0.2.x-0.3.x, N3) and
// `registerWorker` (0.9 and later, N11, N22). Commands run concurrently; replies carry `seq`.
// Node only: on_log {config?} calls the SDK's onLog; each record arrives as {"event": "log", "record"}.
import { createRequire } from 'node:module'
import path from 'node:path'
import readline from 'node:readline'
import { parseArgs } from 'node:util'

// Replies own stdout; whatever the SDK logs goes to stderr.
console.log = console.info = console.debug = console.warn = console.error

const { values: options, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    url: { type: 'string' },
    name: { type: 'string' },
    'sdk-dir': { type: 'string' },
    bare: { type: 'boolean', default: false },
    'invocation-timeout-ms': { type: 'string' },
    'connect-timeout': { type: 'string', default: '60' },
  },
})
const url = options.url ?? positionals[0]
const name = options.name ?? positionals[1]
const sdkDir = options['sdk-dir'] ?? process.env.III_SDK_DIR
if (!url || !name || !sdkDir) {
  console.error('usage: node_worker.mjs --sdk-dir DIR --url URL --name NAME [--bare]')
  process.exit(2)
}

const require = createRequire(path.join(path.resolve(sdkDir), 'package.json'))
const sdk = require('iii-sdk')
const modern = typeof sdk.registerWorker === 'function'

const reply = (message) => process.stdout.write(JSON.stringify(message) + '\n')
const errorBody = (error) => {
  const isError = error instanceof Error
  const code = error?.code ?? null
  const message = error?.message ?? String(error)
  // InvocationError (N11, N22) puts "<code>: " before the wire message; wire_message is
  // the engine's or target's text without it.
  const prefix = `${code}: `
  return {
    // N3 rejects with the raw {code, message, stacktrace} object, later versions with an Error.
    code,
    message,
    wire_message: isError && code && message.startsWith(prefix) ? message.slice(prefix.length) : message,
    stacktrace: error?.stacktrace ?? null,
    type: isError ? error.constructor.name : typeof error,
    text: isError ? String(error) : JSON.stringify(error),
  }
}

const sdkOptions = { workerName: name }
if (options['invocation-timeout-ms']) sdkOptions.invocationTimeoutMs = Number(options['invocation-timeout-ms'])
const iii = modern ? sdk.registerWorker(url, sdkOptions) : sdk.init(url, sdkOptions)

// --- handlers ----------------------------------------------------------------------------
const counters = new Map()
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
function makeHandler(behavior, spec) {
  const counter = spec.counter ?? 'default'
  switch (behavior) {
    case 'echo':
      return async (data) => data
    case 'boom': {
      const text = spec.message ?? 'kaboom'
      return async () => {
        throw new Error(text)
      }
    }
    case 'sleep':
      return async (data) => {
        await sleep(data?.sleep_ms ?? spec.sleep_ms ?? 0)
        return data
      }
    case 'count':
      return async () => {
        counters.set(counter, (counters.get(counter) ?? 0) + 1)
        return { count: counters.get(counter) }
      }
    case 'read_count':
      return async () => ({ count: counters.get(counter) ?? 0 })
    case 'fill':
      // A14: write `bytes` bytes of 7s and one text message to data.out, then close.
      return async (data) => {
        const out = data.out
        await new Promise((resolve, reject) =>
          out.stream.write(Buffer.alloc(data.bytes, 7), (err) => (err ? reject(err) : resolve())),
        )
        out.sendMessage('done')
        await new Promise((resolve) => out.stream.end(resolve))
        out.close()
        return { written: data.bytes }
      }
    case 'http_stream':
      // An HTTP route through @iii-dev/helpers' http((req, res) => ...) form (N22): reads the
      // streamed request body and streams it back upper-cased with a status and a header.
      return require('@iii-dev/helpers/http').http(async (req, res) => {
        const body = await req.request_body.readAll()
        res.status(spec.status ?? 201)
        res.headers({ 'content-type': 'text/plain', 'x-streamed-by': name })
        for (const part of body.toString().toUpperCase().split(' ')) {
          await new Promise((resolve) => res.stream.write(part + ' ', resolve))
        }
        await new Promise((resolve) => res.stream.end(resolve))
        res.close()
      })
    default:
      throw new Error(`unknown behavior ${JSON.stringify(behavior)}`)
  }
}

const functions = new Map()
function register(id, behavior, spec = {}) {
  const handler = makeHandler(behavior, spec)
  const options = spec.description ? { description: spec.description } : undefined
  const ref = modern ? iii.registerFunction(id, handler, options) : iii.registerFunction({ id, ...options }, handler)
  functions.set(id, ref)
}

// --- calls -------------------------------------------------------------------------------
function call(functionId, data, timeoutMs) {
  if (!modern) return iii.trigger(functionId, data, timeoutMs || undefined)
  const request = { function_id: functionId, payload: data }
  if (timeoutMs) request.timeoutMs = timeoutMs
  return iii.trigger(request)
}

async function callVoid(functionId, data) {
  if (!modern) return iii.triggerVoid(functionId, data)
  return iii.trigger({ function_id: functionId, payload: data, action: sdk.TriggerAction.Void() })
}

async function listFrom(method, engineFunction, key) {
  if (typeof iii[method] === 'function') {
    const rows = await iii[method]() // N3: the raw array
    return { [key]: Array.isArray(rows) ? rows : rows?.[key], via: 'sdk' }
  }
  const result = await call(engineFunction, {})
  return { [key]: result[key], via: 'engine' }
}

async function channelFill(functionId, bytes) {
  const channel = modern && typeof iii.createChannel !== 'function'
    ? await require('iii-sdk/helpers').createChannel(iii) // N22: helpers subpath
    : await iii.createChannel()
  const messages = []
  channel.reader.onMessage((message) => messages.push(message))
  await call(functionId, { out: channel.writerRef, bytes })
  const data = await channel.reader.readAll()
  return { bytes: data.length, values: [...new Set(data)].sort((a, b) => a - b), messages }
}

// --- commands ----------------------------------------------------------------------------
const triggers = new Map()
const triggerTypes = new Map()
let nextHandle = 0
const emitTrigger = (event, config) => reply({ event, config: { ...config, config: config.config ?? null } })

async function handle(command) {
  switch (command.op) {
    case 'register':
      register(command.id, command.behavior ?? 'echo', command)
      return null
    case 'unregister_function': {
      const ref = functions.get(command.id)
      if (!ref) throw new Error(`no function ${command.id} registered here`)
      ref.unregister()
      functions.delete(command.id)
      return null
    }
    case 'call':
      return call(command.function_id, command.data, command.timeout_ms)
    case 'call_void':
    case 'void':
      return callVoid(command.function_id, command.data)
    case 'enqueue':
      if (!modern) throw new Error('this SDK version has no enqueue action')
      return iii.trigger({
        function_id: command.function_id,
        payload: command.data,
        action: sdk.TriggerAction.Enqueue({ queue: command.queue }),
      })
    case 'call_many':
      return Promise.all(command.datas.map((data) => call(command.function_id, data)))
    case 'list_functions':
      return listFrom('listFunctions', 'engine::functions::list', 'functions')
    case 'list_workers':
      return listFrom('listWorkers', 'engine::workers::list', 'workers')
    case 'register_trigger_type': {
      const type = { id: command.id, description: command.description ?? command.id }
      iii.registerTriggerType(type, {
        registerTrigger: async (config) => emitTrigger('trigger_registered', config),
        unregisterTrigger: async (config) => emitTrigger('trigger_unregistered', config),
      })
      triggerTypes.set(command.id, type)
      return null
    }
    case 'unregister_trigger_type':
      iii.unregisterTriggerType(triggerTypes.get(command.id) ?? { id: command.id, description: command.id })
      triggerTypes.delete(command.id)
      return null
    case 'register_trigger': {
      const trigger = iii.registerTrigger({
        type: command.trigger_type,
        function_id: command.function_id,
        config: command.config ?? {},
      })
      const handle = String(++nextHandle)
      triggers.set(handle, trigger)
      return { handle }
    }
    case 'unregister_trigger': {
      const trigger = triggers.get(command.handle)
      if (!trigger) throw new Error(`no trigger handle ${command.handle}`)
      trigger.unregister()
      triggers.delete(command.handle)
      return null
    }
    case 'on_functions_available':
      if (typeof iii.onFunctionsAvailable !== 'function') throw new Error('this SDK version has no onFunctionsAvailable')
      iii.onFunctionsAvailable((functions) =>
        reply({ event: 'functions_available', functions: functions.map((f) => f.function_id) }),
      )
      return null
    case 'channel_fill':
      return channelFill(command.function_id, command.bytes)
    case 'on_log':
      // onLog (0.3.x): the SDK binds the engine's `log` trigger; each record becomes an event.
      if (typeof iii.onLog !== 'function') throw new Error('this SDK version has no onLog')
      iii.onLog((record) => reply({ event: 'log', record }), command.config)
      return null
    default:
      throw new Error(`unknown op ${JSON.stringify(command.op)}`)
  }
}

async function run(command) {
  try {
    const result = await handle(command)
    reply({ seq: command.seq, ok: true, result: result === undefined ? null : result })
  } catch (error) {
    reply({ seq: command.seq, ok: false, error: errorBody(error) })
  }
}

process.on('unhandledRejection', (error) => console.error('[node_worker] unhandled rejection', error))

// --- startup: connected (the SDK's own state), default functions, ready ------------------
const connectionState = () => (typeof iii.getConnectionState === 'function' ? iii.getConnectionState() : iii.connectionState)
if (connectionState() !== undefined) {
  // Every version keeps a connection state; none of N11/N22 exposes a callback for it.
  const deadline = Date.now() + Number(options['connect-timeout']) * 1000
  while (connectionState() !== 'connected') {
    if (Date.now() > deadline) {
      console.error(`[node_worker] not connected to ${url} (state ${connectionState()})`)
      process.exit(3)
    }
    await sleep(20)
  }
}
if (!options.bare) {
  for (const [suffix, behavior] of [['echo', 'echo'], ['boom', 'boom'], ['count', 'count'], ['read_count', 'read_count'], ['sleepy', 'sleep']]) {
    register(`${name}::${suffix}`, behavior)
  }
  if (modern) register(`${name}::fill`, 'fill')
}
reply({ event: 'ready' })

const running = new Set()
let shutdownSeq = null
const lines = readline.createInterface({ input: process.stdin })
for await (const line of lines) {
  if (!line.trim()) continue
  let command
  try {
    command = JSON.parse(line)
  } catch (error) {
    reply({ seq: null, ok: false, error: errorBody(error) })
    continue
  }
  if (command.op === 'shutdown') {
    shutdownSeq = command.seq
    break
  }
  const task = run(command)
  running.add(task)
  task.finally(() => running.delete(task))
}
// shutdown (or stdin closed): the SDK closes its socket and fails pending calls locally.
try {
  await iii.shutdown?.()
  await Promise.race([Promise.allSettled([...running]), sleep(3000)])
  reply({ seq: shutdownSeq, ok: true, result: null })
} catch (error) {
  reply({ seq: shutdownSeq, ok: false, error: errorBody(error) })
}
process.exit(0)
