// A js-libp2p COOEE peer for interop tests.
//   node --import ./polyfill.mjs peer.mjs --mode relay|subscribe [--port N] [--bootstrap MADDR]...
// Joins the four COOEE topics (so it relays them) over TCP + Noise + yamux + signed gossipsub.
// Prints JSON lines on stdout: {"event":"ready",...}, {"event":"subscription",...} and, in
// subscribe mode, {"event":"message","topic":...,"from":...,"data_b64":...}. Ends on SIGTERM/stdin EOF.
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { gossipsub } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'

const TOPICS = ['cooee/enrol/v1', 'cooee/assignment/v1', 'cooee/availability/v1', 'cooee/intervention/v1']

function parseArgs (argv) {
  const args = { mode: 'relay', port: 0, bootstrap: [] }
  for (let i = 0; i < argv.length; i++) {
    const name = argv[i]
    const value = argv[++i]
    if (name === '--mode') args.mode = value
    else if (name === '--port') args.port = Number(value)
    else if (name === '--bootstrap') args.bootstrap.push(value)
    else throw new Error(`unknown argument ${name}`)
  }
  if (!['relay', 'subscribe'].includes(args.mode)) throw new Error(`bad --mode ${args.mode}`)
  return args
}

function emit (event) {
  process.stdout.write(JSON.stringify(event) + '\n')
}

const args = parseArgs(process.argv.slice(2))
const node = await createLibp2p({
  addresses: { listen: [`/ip4/127.0.0.1/tcp/${args.port}`] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: {
    identify: identify(),
    pubsub: gossipsub({
      emitSelf: false,
      allowPublishToZeroTopicPeers: true,
      heartbeatInterval: 1000,
      globalSignaturePolicy: 'StrictSign'
    })
  }
})

const pubsub = node.services.pubsub
pubsub.addEventListener('subscription-change', (evt) => {
  for (const sub of evt.detail.subscriptions) {
    emit({ event: 'subscription', peer: evt.detail.peerId.toString(), topic: sub.topic, subscribe: sub.subscribe })
  }
})
if (args.mode === 'subscribe') {
  pubsub.addEventListener('message', (evt) => {
    const msg = evt.detail
    emit({
      event: 'message',
      topic: msg.topic,
      from: msg.type === 'signed' ? msg.from.toString() : null,
      data_b64: Buffer.from(msg.data).toString('base64')
    })
  })
}
for (const topic of TOPICS) pubsub.subscribe(topic)

emit({ event: 'ready', peer_id: node.peerId.toString(), addrs: node.getMultiaddrs().map((a) => a.toString()) })

// Keep dialling the bootstrap peers: the py peers may come up after this one.
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
for (const addr of args.bootstrap) {
  ;(async () => {
    const target = multiaddr(addr)
    for (;;) {
      if (node.status !== 'started') return
      const connected = node.getConnections().some((c) => addr.endsWith(c.remotePeer.toString()))
      if (!connected) {
        try {
          await node.dial(target)
          emit({ event: 'connected', addr })
        } catch (err) {
          emit({ event: 'dial_failed', addr, error: String(err.message || err) })
        }
      }
      await sleep(500)
    }
  })()
}

const stop = async () => {
  await node.stop()
  process.exit(0)
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
process.stdin.on('end', stop)
process.stdin.resume()
