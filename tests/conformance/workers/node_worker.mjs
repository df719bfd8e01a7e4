// A worker on an official npm iii-sdk, driven by JSON lines on stdin. Works with the
// `init` API (0.3.x) and the `registerWorker` API (0.9 and later).
// Run: III_SDK_DIR=<folder with node_modules/iii-sdk> node node_worker.mjs ws://127.0.0.1:PORT PREFIX
// Same commands and replies as py_worker.py.
import { createRequire } from 'node:module'
import path from 'node:path'
import readline from 'node:readline'

// Replies own stdout; anything the SDK logs goes to stderr.
console.log = console.info = console.debug = console.error

const require = createRequire(path.join(process.env.III_SDK_DIR, 'package.json'))
const sdk = require('iii-sdk')
const modern = typeof sdk.registerWorker === 'function'

const [url, prefix] = process.argv.slice(2)
let count = 0
const reply = (message) => process.stdout.write(JSON.stringify(message) + '\n')

const iii = modern ? sdk.registerWorker(url, { workerName: prefix }) : sdk.init(url, { workerName: prefix })
const register = (id, handler) => (modern ? iii.registerFunction(id, handler) : iii.registerFunction({ id }, handler))
register(`${prefix}::echo`, async (data) => data)
register(`${prefix}::boom`, async () => { throw new Error('kaboom') })
register(`${prefix}::count`, async () => ({ count: ++count }))
register(`${prefix}::read_count`, async () => ({ count }))
register(`${prefix}::sleepy`, async (data) => {
  await new Promise((resolve) => setTimeout(resolve, data.sleep_ms))
  return data
})
if (modern) {
  // Channels (A14): write `bytes` bytes of 7s and one text message to data.out, then close.
  register(`${prefix}::fill`, async (data) => {
    const out = data.out
    await new Promise((resolve, reject) => out.stream.write(Buffer.alloc(data.bytes, 7), (err) => (err ? reject(err) : resolve())))
    out.sendMessage('done')
    await new Promise((resolve) => out.stream.end(resolve))
    out.close()
    return { written: data.bytes }
  })
}
reply({ event: 'ready' })

const triggers = new Map()
const emit = (event, config) => reply({ event, config: { ...config, config: config.config ?? null } })

async function control(command) {
  switch (command.op) {
    case 'register_trigger_type':
      iii.registerTriggerType(
        { id: command.id, description: command.description ?? command.id },
        {
          registerTrigger: async (config) => emit('trigger_registered', config),
          unregisterTrigger: async (config) => emit('trigger_unregistered', config),
        },
      )
      return null
    case 'register_trigger': {
      const handle = iii.registerTrigger({ type: command.trigger_type, function_id: command.function_id, config: command.config })
      const key = String(triggers.size + 1)
      triggers.set(key, handle)
      return { handle: key }
    }
    case 'unregister_trigger':
      triggers.get(command.handle).unregister()
      return null
    case 'on_functions_available':
      iii.onFunctionsAvailable((functions) =>
        reply({ event: 'functions_available', functions: functions.map((f) => f.function_id) }),
      )
      return null
    case 'call_many':
      return Promise.all(command.datas.map((data) => call({ op: 'call', function_id: command.function_id, data })))
    default:
      return call(command)
  }
}

async function call(command) {
  if (!modern) {
    if (command.op === 'void') return iii.triggerVoid(command.function_id, command.data)
    return iii.trigger(command.function_id, command.data, command.timeout_ms)
  }
  const request = { function_id: command.function_id, payload: command.data }
  if (command.timeout_ms) request.timeoutMs = command.timeout_ms
  if (command.op === 'void') request.action = sdk.TriggerAction.Void()
  if (command.op === 'enqueue') request.action = sdk.TriggerAction.Enqueue({ queue: command.queue })
  return iii.trigger(request)
}

const lines = readline.createInterface({ input: process.stdin })
for await (const line of lines) {
  const command = JSON.parse(line)
  const seq = command.seq
  try {
    if (command.op === 'shutdown') {
      await iii.shutdown?.()
      reply({ seq, ok: true, result: null })
      break
    }
    const result = await control(command)
    reply({ seq, ok: true, result: result === undefined ? null : result })
  } catch (error) {
    reply({
      seq,
      ok: false,
      // N3 rejects with the raw {code, message, stacktrace} object, later versions with an Error.
      error: { code: error.code, message: error.message, stacktrace: error.stacktrace, type: error instanceof Error ? error.constructor.name : 'object' },
    })
  }
}
process.exit(0)
