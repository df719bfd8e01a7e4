// A TypeScript worker on the official npm SDK that calls the Python embedding worker,
// and is called back by it: `node::compare` asks `embedding::generate` for two vectors
// and `embedding::similarity` for their similarity.
//
//   III_URL=ws://localhost:49134 npx tsx examples/node/greeter.ts
import { registerWorker } from 'iii-sdk'

type Embeddings = { embeddings: number[][]; dimensions: number }

const iii = registerWorker(process.env.III_URL ?? 'ws://localhost:49134', { workerName: 'greeter' })

iii.registerFunction('node::greet', async (input: { name: string }) => ({ greeting: `hello, ${input.name}` }))

iii.registerFunction('node::compare', async (input: { a: string; b: string }) => {
  const { embeddings } = await iii.trigger<unknown, Embeddings>({
    function_id: 'embedding::generate',
    payload: { texts: [input.a, input.b] },
  })
  const { similarity } = await iii.trigger<unknown, { similarity: number }>({
    function_id: 'embedding::similarity',
    payload: { a: embeddings[0], b: embeddings[1] },
  })
  return { similarity }
})

console.log('greeter ready')
