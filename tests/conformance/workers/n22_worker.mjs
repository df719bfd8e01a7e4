// A worker on the official npm iii-sdk (0.22), driven by JSON lines on stdin.
// Run: III_SDK_DIR=<folder with node_modules/iii-sdk> node n22_worker.mjs ws://127.0.0.1:PORT PREFIX
// Same commands and replies as p25_worker.py.
import { createRequire } from 'node:module'
import path from 'node:path'
import readline from 'node:readline'

// Replies own stdout; anything the SDK logs goes to stderr.
console.log = console.info = console.debug = console.error

const require = createRequire(path.join(process.env.III_SDK_DIR, 'package.json'))
const { registerWorker, TriggerAction } = require('iii-sdk')

const [url, prefix] = process.argv.slice(2)
let count = 0
const reply = (message) => process.stdout.write(JSON.stringify(message) + '\n')

const iii = registerWorker(url, { workerName: prefix })
iii.registerFunction(`${prefix}::echo`, async (data) => data)
iii.registerFunction(`${prefix}::boom`, async () => { throw new Error('kaboom') })
iii.registerFunction(`${prefix}::count`, async () => ({ count: ++count }))
iii.registerFunction(`${prefix}::read_count`, async () => ({ count }))
reply({ event: 'ready' })

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
    const request = { function_id: command.function_id, payload: command.data }
    if (command.timeout_ms) request.timeoutMs = command.timeout_ms
    if (command.op === 'void') request.action = TriggerAction.Void()
    const result = await iii.trigger(request)
    reply({ seq, ok: true, result: result === undefined ? null : result })
  } catch (error) {
    reply({
      seq,
      ok: false,
      error: { code: error.code, message: error.message, stacktrace: error.stacktrace, type: error.constructor?.name },
    })
  }
}
process.exit(0)
