// A small js-libp2p peer for interop tests: TCP + Noise + Yamux, with ping, identify,
// /perf/1.0.0 and three test protocols, and Circuit Relay v2 (@libp2p/circuit-relay-v2) roles.
// Logs go to stderr, results to stdout as JSON.
//
//   node peer.mjs listen [--listen MA ...] [--seed HEX] [--lifetime S] [--no-monitor]
//       [--relay MA/p2p/RELAYID ...] [--report-connections] [--connect MA ...]
//       [--dcutr] [--autonat] [--fix-...] (see "DCUtR and AutoNAT" below)
//       prints {"peerId": "...", "addrs": [...]} once listening; exits when stdin closes,
//       on SIGTERM/SIGINT, or after --lifetime seconds (default 900).
//       --relay (repeatable) adds circuitRelayTransport and listens on <relay>/p2p-circuit
//       too: it makes a reservation on each relay (dialing it, no identify needed first) and
//       prints the ready line only once each relay shows in its addresses, as
//       <relay addr>/p2p/RELAYID/p2p-circuit/p2p/<own id> (after the direct ones); js
//       refreshes the reservation max(30 s, 5 min before expiry) after making it.
//       --report-connections (also for `relay`): after the ready line, one line per connection
//       opened (those opened before it, e.g. to the relay, come right after it):
//       {"event": "connection", "remotePeer", "remoteAddr", "direction": "inbound"|"outbound",
//        "limited": bool, "limits": {"seconds": N|null, "bytes": N|null} or null}. "limits"
//       are those the relay granted (js's connection.limits, read before the first byte: js
//       takes Limit.duration as seconds); null for an unlimited connection.
//   node peer.mjs relay [--listen MA] [--seed HEX] [--lifetime S] [--limit-duration S]
//       [--limit-data B] [--no-limit] [--spec-duration] [--reservation-ttl S]
//       [--max-reservations N] [--report-connections]
//       a Circuit Relay v2 server (circuitRelayServer: hop), otherwise as `listen` (same ready
//       line, same lifetime). js's defaults: each relayed connection limited to 2 min and to
//       128 KiB counted over both directions (the relayed Noise/Yamux bytes, all streams),
//       reset when either is exceeded; reservations last 2 h (--reservation-ttl), at most 15
//       (--max-reservations). It accepts reservations from any address, loopback included,
//       and returns all its own addresses (/p2p/ID included) and a signed voucher. --limit-*
//       replace the default limits (both must be > 0); --no-limit sends no Limit at all, so
//       relayed connections are not limited (they still end with the reservation).
//       Stock js announces Limit.duration in milliseconds (120000 for 2 min, where the spec
//       says seconds); --spec-duration makes it announce seconds (see announceDurationInSeconds).
//   node peer.mjs dial MA/p2p/ID [--ping N] [--echo B] [--sink B] [--source B]
//       [--perf-upload B] [--perf-download B] [--pause S] [--timeout S] [--seed HEX] [--listen MA]
//       prints one JSON object with the results and exits 0, or {"error": "..."} and exits 1.
//       Unless --no-identify, it first runs identify on the connection and reports what the
//       listener said: "identify": {"protocols", "agentVersion", "listenAddrs", "observedAddr",
//       "certifiedAddrs" (from its verified signed peer record; [] without one), "seq"}, or
//       {"error": "..."} when the listener does not serve identify.
//       MA may be a circuit address, MA/p2p/RELAYID/p2p-circuit/p2p/ID (circuitRelayTransport
//       is always there; test streams are opened with runOnLimitedConnection). The result
//       has "connection": {"remoteAddr", "limited", "limits" (as for --report-connections),
//       "limitsRemaining" (js's live counters after all operations), "status"}. --pause waits
//       S seconds after identify, before the operations (to outlive a duration limit).
//   node peer.mjs perf MA/p2p/ID --upload-bytes U --download-bytes D [--iterations K]
//       [--reuse-connection] [--timeout S]
//       the perf client of `python -m libp2p.perf client`, with the same output: one JSON line
//       per iteration, {"event": "result", "iteration", "time_seconds", "connect_seconds",
//       "upload_bytes", "download_bytes", "upload_seconds", "download_seconds"}, timed inside
//       node (from the start of the dial to the last byte), so Node's start-up is not counted.
//       A new connection per iteration (closed after it) unless --reuse-connection.
//       Exits 0, or prints {"error": "..."} and exits 1.
//   node [--expose-gc] peer.mjs hold MA/p2p/ID [--connections N]
//       for memory benchmarks: one warm-up connection and 1-byte perf, closed; prints
//       {"event": "warm", "rss": BYTES}; waits for a line on stdin; opens N connections with
//       a 1-byte perf each and keeps them idle; prints {"event": "ready", "connections": N,
//       "rss": BYTES} (RSS after a GC when --expose-gc is given); exits when stdin closes.
//
//
// DCUtR (@libp2p/dcutr) and AutoNAT v1 (@libp2p/autonat), in `listen` and `relay`:
//   --dcutr               add the DCUtR service (and circuitRelayTransport). Role B is a
//                         `listen --relay R --dcutr` peer: js starts DCUtR on each inbound
//                         relayed connection once identify lists /libp2p/dcutr; role A is a
//                         `listen --connect MA --dcutr` peer (--connect, repeatable: dial MA
//                         after the ready line and keep the connection; MA may be a circuit
//                         address).
//   --autonat             add the AutoNAT v1 service (server, and client for its public addrs).
//   --autonat-v2          add the AutoNAT v2 service (@libp2p/autonat-v2: server, and client for
//                         its unverified public addrs); {"event": "autonat-v2", ...} lines.
//   --public-ranges       loopback and documentation ranges count as public in the whole process
//                         (needs `node --import ./public-ranges.mjs`; see that file).
//   --listen MA           repeatable (all modes).
//   Fixes that js needs to hole punch, each separate (stock js: none; see the functions):
//   --fix-addr-filter     (1) DCUtR accepts private/loopback/documentation-range addresses
//                         (stock: public only); --dcutr-accept CIDR (IPv4, repeatable) accepts
//                         only public ones and those ranges (implies --fix-addr-filter).
//   --fix-observed        (2) confirm each identify-observed TCP address, so js announces it;
//                         --announce MA (repeatable) appends static announce addresses instead.
//   --fix-dial-port       (3) every dial leaves from one fixed port, --dial-port N or a free one
//                         (not the listen port: Linux/Node 20 refuse that, EADDRINUSE).
//   --fix-responder       (4) B's hole-punch dial is upgraded as responder (initiator: false
//                         reaches the upgrader and the socket is marked inbound).
//   --fix-all             all four.
//   With --report-connections these add event lines (each with "t", seconds since start):
//   {"event": "connection-closed", ...as "connection"}; {"event": "direct", "remotePeer",
//   "remoteAddr", "direction", "sinceRelayedSeconds"} per non-relayed connection (seconds since
//   the first relayed connection with that peer, null if none); {"event": "connected" |
//   "connect-error", "target", ...} (--connect); {"event": "dcutr", "phase": "start" | "dial" |
//   "error" | "end", "role": "A" | "B" | "B-unilateral", "remotePeer", "direct" (end), "addrs",
//   "ok" (dial), "error", "message"}; {"event": "autonat-server", "remotePeer", "remoteAddr",
//   "requested", "status", "statusText", "addr"}; {"event": "autonat", "addr", "reachable"};
//   {"event": "observed", "addr", "from"} (--fix-observed); {"event": "dial-port", "port"};
//   {"event": "addresses", "addrs"} when the announced addresses change.
//   --ping-direct (with --report-connections): ping once over each direct connection that
//   followed a relayed one with the same peer (a hole punch): {"event": "ping-direct",
//   "remotePeer", "remoteAddr", "rttMs", "reportedMs"} (what the test-plans hole-punch
//   clients report; tests/interop/js_contract_client.py), or "ping-direct-error".
//
// Common options: --no-monitor turns off the connection monitor's pings; --no-conn-limits
// allow-lists loopback in the connection manager, which otherwise refuses more than
// 5 inbound connections per second per host and more than 10 pending ones (benchmarks
// open hundreds).
//
// Protocols served (and used by `dial`):
//   /interop/echo/1.0.0    echoes every byte until the remote closes its write side, then closes
//   /echo/1.0.0            the same, under the name examples/nat/listener.py serves it
//   /interop/sink/1.0.0    reads to EOF, replies u64be(count) + sha256(bytes), then closes
//   /interop/source/1.0.0  reads u64be(N), writes N bytes with byte i = i % 251, then closes
//   /perf/1.0.0            libp2p perf: reads u64be(N), drains the upload to EOF, writes N bytes
// (all with runOnLimitedConnection), plus /ipfs/id/1.0.0 (identify, in every mode: js's relay
// needs it), /ipfs/ping/1.0.0, /libp2p/circuit/relay/0.2.0/hop (`relay`) and
// /libp2p/circuit/relay/0.2.0/stop (`dial`, `listen --relay`).
//
// @libp2p/perf is not used: it is not available from the npm registry this project
// reaches, so the perf protocol (a dozen lines) is implemented here on both sides.
import './polyfill.mjs'
import { createHash, randomBytes } from 'node:crypto'
import { createServer } from 'node:net'
import { performance } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { autoNAT } from '@libp2p/autonat'
import { autoNATv2 } from '@libp2p/autonat-v2'
import { circuitRelayServer, circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { dcutr } from '@libp2p/dcutr'
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { AbstractMessageStream, AbstractStream, isPrivate, isPrivateIp } from '@libp2p/utils'
import { createLibp2p } from 'libp2p'
// Internal modules of @libp2p/circuit-relay-v2 (not in its "exports"), imported by file URL:
// the same module instances its own code uses, so the patches below take effect.
import { LimitTracker } from './node_modules/@libp2p/circuit-relay-v2/dist/src/utils.js'
import { Limit } from './node_modules/@libp2p/circuit-relay-v2/dist/src/pb/index.js'

const ECHO = '/interop/echo/1.0.0'
const EXAMPLES_ECHO = '/echo/1.0.0'
const SINK = '/interop/sink/1.0.0'
const SOURCE = '/interop/source/1.0.0'
const PERF = '/perf/1.0.0'
const PING = '/ipfs/ping/1.0.0'
const CHUNK = 64 * 1024
const HANDLER_OPTIONS = { maxInboundStreams: 256, maxOutboundStreams: 256, runOnLimitedConnection: true }
// Streams opened by `dial` may run over a limited (relayed) connection; js refuses that unless
// both newStream() and the remote's handle() say runOnLimitedConnection.
const STREAM_OPTIONS = { runOnLimitedConnection: true }
// 261 * 251 bytes: a whole number of periods, so every chunk of it starts at i % 251 == 0.
const PATTERN = Uint8Array.from({ length: 251 * 261 }, (_, i) => i % 251)
const ZEROS = new Uint8Array(CHUNK)

// Work around a js-libp2p bug (@libp2p/utils 7.4.1) that loses a stream when the remote sends
// its protocol proposal, data and FIN together (lazy "0-RTT" multistream-select, as our stack
// and go do): if the FIN is processed before multistream-select hands the bytes it read past
// the protocol line back to the stream, the stream has already marked its readable end closed
// and `unshift()` throws "Cannot push data onto a stream that is closed", aborting the stream.
// The readable end was closed only because the buffer looked empty; re-open it for the bytes
// handed back, unless the application itself closed reading.
const closedReadLocally = Symbol('closedReadLocally')
const originalCloseRead = AbstractStream.prototype.closeRead
AbstractStream.prototype.closeRead = function (...args) {
  this[closedReadLocally] = true
  return originalCloseRead.apply(this, args)
}
const originalUnshift = AbstractMessageStream.prototype.unshift
AbstractMessageStream.prototype.unshift = function (data) {
  if (data.byteLength > 0 && this.readStatus === 'closed' && this.status === 'open' &&
      this.remoteWriteStatus === 'closed' && this[closedReadLocally] !== true) {
    this.readStatus = 'readable'
  }
  return originalUnshift.call(this, data)
}

// Relayed connections carry the limits the relay announced in a LimitTracker (utils.js of
// @libp2p/circuit-relay-v2) whose getLimits() result becomes `connection.limits`: an object
// with live getters, `bytes` (remaining, counted over both directions) and `seconds`
// (remaining), each present only when limited. To report what the relay granted rather than
// what is left, take a snapshot when getLimits() is called: once per relayed connection, right
// after the tracker is made from the HOP/STOP message and before the upgrade sends a byte.
const GRANTED_LIMITS = Symbol('grantedLimits')
const originalGetLimits = LimitTracker.prototype.getLimits
LimitTracker.prototype.getLimits = function (...args) {
  const limits = originalGetLimits.apply(this, args)
  if (limits != null && limits[GRANTED_LIMITS] == null) {
    Object.defineProperty(limits, GRANTED_LIMITS, { value: snapshotLimits(limits) })
  }
  return limits
}

// js's relay server keeps Limit.duration in milliseconds (it enforces it with
// AbortSignal.timeout) and writes that number as is into the HOP and STOP messages, whose
// Limit.duration is in seconds (circuit-v2 spec, and js's own client multiplies it by 1000):
// a 2 min limit goes out as 120000 "seconds". `relay --spec-duration` converts it to seconds
// when the Limit message is encoded, so the relay announces what it enforces.
function announceDurationInSeconds () {
  const originalCodec = Limit.codec
  let wrapped = null
  Limit.codec = () => {
    if (wrapped == null) {
      const codec = originalCodec()
      wrapped = {
        ...codec,
        encode: (obj, ...rest) => codec.encode(
          obj?.duration != null ? { ...obj, duration: Math.max(1, Math.round(obj.duration / 1000)) } : obj,
          ...rest
        )
      }
    }
    return wrapped
  }
}

function snapshotLimits (limits) {
  if (limits == null) return null
  return {
    seconds: limits.seconds ?? null,
    bytes: limits.bytes != null ? Number(limits.bytes) : null
  }
}

function grantedLimits (conn) {
  return conn.limits == null ? null : (conn.limits[GRANTED_LIMITS] ?? snapshotLimits(conn.limits))
}

function isRelayed (conn) {
  return conn.remoteAddr.toString().includes('/p2p-circuit')
}

function describeConnection (conn) {
  return {
    remotePeer: conn.remotePeer.toString(),
    remoteAddr: conn.remoteAddr.toString(),
    direction: conn.direction,
    limited: conn.limits != null,
    limits: grantedLimits(conn)
  }
}

function log (...args) {
  console.error('[js-peer]', ...args)
}

function emit (obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

function u64be (n) {
  const out = new Uint8Array(8)
  new DataView(out.buffer).setBigUint64(0, BigInt(n), false)
  return out
}

function readU64be (bytes) {
  return Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, false))
}

function hex (bytes) {
  return Buffer.from(bytes).toString('hex')
}

function asBytes (chunk) {
  // Streams deliver Uint8Array or Uint8ArrayList; subarray() of the latter concatenates.
  return chunk instanceof Uint8Array ? chunk : chunk.subarray()
}

// Reads a stream through its events rather than its async iterator: the iterator waits
// for 'remoteCloseWrite', which may have fired before a handler starts reading when the
// remote sent data and FIN together with protocol negotiation.
//
// For the same reason the end of the stream is not `readableEnded`: when data and FIN arrive
// during protocol negotiation, js-libp2p (@libp2p/utils 7.4.1) emits 'end' while the bytes read
// past the protocol line are still held by multistream-select, and only then hands them back
// (unshift) to be dispatched a microtask later. The stream has ended when the remote closed
// its write side (or the stream closed) and the stream holds no bytes back.
class Reader {
  #stream
  #queue = []
  #queued = 0
  #error = null
  #wake = null

  constructor (stream) {
    this.#stream = stream
    const notify = () => this.#notify()
    stream.addEventListener('message', (evt) => {
      const bytes = asBytes(evt.data)
      if (bytes.byteLength > 0) {
        this.#queue.push(bytes)
        this.#queued += bytes.byteLength
      }
      notify()
    })
    stream.addEventListener('end', notify)
    stream.addEventListener('remoteCloseWrite', notify)
    stream.addEventListener('close', (evt) => {
      if (evt.error != null) this.#error = evt.error
      notify()
    })
  }

  #notify () {
    const wake = this.#wake
    this.#wake = null
    wake?.()
  }

  #ended () {
    const stream = this.#stream
    if (stream.readBufferLength > 0) return false
    return stream.remoteWriteStatus !== 'writable' || stream.readStatus === 'closed' ||
      stream.status !== 'open'
  }

  async #more () {
    // Wait until data, EOF or an error arrives; false once nothing more will come.
    while (this.#queue.length === 0) {
      if (this.#error != null) throw this.#error
      if (this.#ended()) return false
      await new Promise((resolve) => { this.#wake = resolve })
    }
    return true
  }

  async readExactly (n) {
    const out = new Uint8Array(n)
    let off = 0
    while (off < n) {
      if (!(await this.#more())) {
        throw new Error(`unexpected EOF on ${this.#stream.protocol}: wanted ${n} bytes, got ${off}`)
      }
      const head = this.#queue[0]
      const take = Math.min(head.byteLength, n - off)
      out.set(head.subarray(0, take), off)
      off += take
      this.#queued -= take
      if (take === head.byteLength) this.#queue.shift()
      else this.#queue[0] = head.subarray(take)
    }
    return out
  }

  async * chunks () {
    while (await this.#more()) {
      const head = this.#queue.shift()
      this.#queued -= head.byteLength
      yield head
    }
  }
}

async function writeAll (stream, bytes) {
  for (let off = 0; off < bytes.byteLength; off += CHUNK) {
    if (!stream.send(bytes.subarray(off, off + CHUNK))) await stream.onDrain()
  }
}

async function writeRepeated (stream, block, n) {
  // Writes n bytes taken from the start of `block`, repeated.
  while (n > 0) {
    const take = Math.min(n, block.byteLength)
    n -= take
    if (!stream.send(block.subarray(0, take))) await stream.onDrain()
  }
}

// ---- protocol handlers (the listening side)

async function serveEcho (stream) {
  const reader = new Reader(stream)
  for await (const chunk of reader.chunks()) {
    if (!stream.send(chunk)) await stream.onDrain()
  }
  await stream.close()
}

async function serveSink (stream) {
  const reader = new Reader(stream)
  const hash = createHash('sha256')
  let count = 0
  for await (const chunk of reader.chunks()) {
    hash.update(chunk)
    count += chunk.byteLength
  }
  const reply = new Uint8Array(40)
  reply.set(u64be(count), 0)
  reply.set(hash.digest(), 8)
  stream.send(reply)
  await stream.close()
}

async function serveSource (stream) {
  const reader = new Reader(stream)
  const n = readU64be(await reader.readExactly(8))
  await writeRepeated(stream, PATTERN, n)
  await stream.close()
}

async function servePerf (stream) {
  const reader = new Reader(stream)
  const n = readU64be(await reader.readExactly(8))
  for await (const chunk of reader.chunks()) void chunk // drain the upload to EOF
  await writeRepeated(stream, ZEROS, n)
  await stream.close()
}

function handler (name, serve) {
  return (stream, connection) => {
    serve(stream).catch((err) => {
      log(`${name} handler failed (peer ${connection.remotePeer}): ${err?.stack ?? err}`)
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    })
  }
}

// ---- client side (the dialing side)

async function runPing (node, peerId, count) {
  const rttsMs = []
  const reportedMs = []
  for (let i = 0; i < count; i++) {
    const start = performance.now()
    const reported = await node.services.ping.ping(peerId)
    rttsMs.push(performance.now() - start)
    reportedMs.push(reported)
  }
  // rttsMs is measured here with a sub-millisecond clock around each ping (a new stream
  // each time, as @libp2p/ping does); reportedMs is what @libp2p/ping returns (whole ms).
  return { count, rttsMs, reportedMs }
}

function describeIdentify (id) {
  const record = id.signedPeerRecord
  return {
    protocols: id.protocols,
    agentVersion: id.agentVersion ?? null,
    protocolVersion: id.protocolVersion ?? null,
    listenAddrs: id.listenAddrs.map((ma) => ma.toString()),
    observedAddr: id.observedAddr?.toString() ?? null,
    certifiedAddrs: record?.addresses.map((ma) => ma.toString()) ?? [],
    seq: record != null ? record.seq.toString() : null
  }
}

async function runPingOnConnection (conn, count) {
  // @libp2p/ping picks a connection by peer and skips limited ones (it would dial again), so
  // over a relayed connection ping by hand: /ipfs/ping/1.0.0, 32 random bytes echoed back.
  const rttsMs = []
  const reportedMs = []
  const stream = await conn.newStream(PING, STREAM_OPTIONS)
  const reader = new Reader(stream)
  for (let i = 0; i < count; i++) {
    const data = randomBytes(32)
    const start = performance.now()
    const startMs = Date.now()
    stream.send(data)
    const echoed = await reader.readExactly(32)
    rttsMs.push(performance.now() - start)
    reportedMs.push(Date.now() - startMs)
    if (!Buffer.from(echoed).equals(data)) throw new Error('ping: the remote echoed different bytes')
  }
  await stream.close()
  return { count, rttsMs, reportedMs }
}

async function runIdentify (node, conn, identified) {
  // js identifies every new connection by itself and refuses a second identify stream while
  // that one runs ("Too many outbound protocol streams"): then take the automatic result (the
  // 'peer:identify' event) or, if that one failed, retry to learn why.
  const deadline = performance.now() + 10_000
  while (true) {
    try {
      return describeIdentify(await node.services.identify.identify(conn))
    } catch (err) {
      const message = String(err?.message ?? err)
      if (!message.includes('Too many outbound protocol streams') || performance.now() > deadline) {
        // The race can show up on the remote instead: a js remote allows one inbound identify
        // stream per connection and drops ours ("Unexpected EOF"; seen over relayed
        // connections, and over direct ones between two js peers). Then the automatic
        // identify, still running, is the answer.
        const automatic = !message.includes('Unexpected EOF')
          ? null
          : await Promise.race([identified, new Promise((resolve) => setTimeout(() => resolve(null), 2000))])
        return automatic != null ? describeIdentify(automatic) : { error: message }
      }
      const automatic = await Promise.race([
        identified,
        new Promise((resolve) => setTimeout(() => resolve(null), 50))
      ])
      if (automatic != null) return describeIdentify(automatic)
    }
  }
}

async function runEcho (conn, size) {
  const data = randomBytes(size)
  const start = performance.now()
  const stream = await conn.newStream(ECHO, STREAM_OPTIONS)
  const reader = new Reader(stream)
  const hash = createHash('sha256')
  let received = 0
  const reading = (async () => {
    for await (const chunk of reader.chunks()) {
      hash.update(chunk)
      received += chunk.byteLength
    }
  })()
  await writeAll(stream, data)
  await stream.close()
  await reading
  const seconds = (performance.now() - start) / 1000
  const sentSha256 = createHash('sha256').update(data).digest('hex')
  const receivedSha256 = hash.digest('hex')
  if (received !== size || receivedSha256 !== sentSha256) {
    throw new Error(`echo mismatch: sent ${size} bytes (${sentSha256}), got ${received} (${receivedSha256})`)
  }
  return { bytes: size, receivedBytes: received, sentSha256, receivedSha256, seconds }
}

async function runSink (conn, size) {
  const data = randomBytes(size)
  const sha256 = createHash('sha256').update(data).digest('hex')
  const start = performance.now()
  const stream = await conn.newStream(SINK, STREAM_OPTIONS)
  const reader = new Reader(stream)
  await writeAll(stream, data)
  await stream.close()
  const reply = await reader.readExactly(40)
  const remoteBytes = readU64be(reply)
  const remoteSha256 = hex(reply.subarray(8))
  const seconds = (performance.now() - start) / 1000
  if (remoteBytes !== size || remoteSha256 !== sha256) {
    throw new Error(`sink mismatch: sent ${size} bytes (${sha256}), remote counted ${remoteBytes} (${remoteSha256})`)
  }
  return { bytes: size, sha256, remoteBytes, remoteSha256, seconds }
}

async function runSource (conn, size) {
  const start = performance.now()
  const stream = await conn.newStream(SOURCE, STREAM_OPTIONS)
  const reader = new Reader(stream)
  stream.send(u64be(size))
  await stream.close()
  const hash = createHash('sha256')
  let received = 0
  let patternOk = true
  for await (const chunk of reader.chunks()) {
    for (let i = 0; patternOk && i < chunk.byteLength; i++) {
      if (chunk[i] !== (received + i) % 251) patternOk = false
    }
    hash.update(chunk)
    received += chunk.byteLength
  }
  const seconds = (performance.now() - start) / 1000
  if (received !== size || !patternOk) {
    throw new Error(`source mismatch: asked for ${size} bytes, got ${received}, pattern ok: ${patternOk}`)
  }
  return { bytes: received, sha256: hash.digest('hex'), patternOk, seconds }
}

async function runPerf (conn, uploadBytes, downloadBytes) {
  // Same wire behaviour and timing points as @libp2p/perf's measurePerformance, over the
  // existing connection: u64be(download size), the upload, close write, read to EOF.
  const start = performance.now()
  const stream = await conn.newStream(PERF, STREAM_OPTIONS)
  const reader = new Reader(stream)
  stream.send(u64be(downloadBytes))
  await writeRepeated(stream, ZEROS, uploadBytes)
  await stream.close()
  const uploaded = performance.now()
  let received = 0
  for await (const chunk of reader.chunks()) received += chunk.byteLength
  const end = performance.now()
  if (received !== downloadBytes) {
    throw new Error(`perf: expected to receive ${downloadBytes} bytes, received ${received}`)
  }
  return {
    type: 'final',
    uploadBytes,
    downloadBytes: received,
    uploadSeconds: (uploaded - start) / 1000,
    downloadSeconds: (end - uploaded) / 1000,
    timeSeconds: (end - start) / 1000
  }
}

// ---- NAT traversal: DCUtR (@libp2p/dcutr), AutoNAT v1 (@libp2p/autonat) and the fixes that
// js needs to hole punch at all (see the header). Each fix is a separate flag so tests can run
// js "stock" and "fixed"; all are applied per node instance, nothing in node_modules changes.

function holePunchFixes (values) {
  const all = values['fix-all'] === true
  return {
    addrFilter: all || values['fix-addr-filter'] === true || (values['dcutr-accept'] ?? []).length > 0,
    observed: all || values['fix-observed'] === true,
    dialPort: all || values['fix-dial-port'] === true || values['dial-port'] != null,
    responder: all || values['fix-responder'] === true
  }
}

function parseCidr4 (text) {
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)\/(\d+)$/.exec(text)
  const octets = m?.slice(1, 5).map(Number)
  const bits = Number(m?.[5])
  if (m == null || octets.some((o) => o > 255) || bits > 32) {
    throw new Error(`--dcutr-accept wants an IPv4 CIDR like 10.0.0.0/8, got ${text}`)
  }
  const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0
  const base = (((octets[0] << 24) | (octets[1] << 16) | (octets[2] << 8) | octets[3]) >>> 0) & mask
  return (ip) => {
    const parts = ip.split('.').map(Number)
    if (parts.length !== 4) return false
    const value = ((parts[0] << 24) | (parts[1] << 16) | (parts[2] << 8) | parts[3]) >>> 0
    return ((value & mask) >>> 0) === base
  }
}

// Fix 1 (--fix-addr-filter): DCUtR keeps only the remote's public addresses (isPublicAndDialable
// in @libp2p/dcutr's utils.js: no circuit, a dial transport, DNS or a non-private IP), and js
// calls loopback, RFC 1918, 100.64/10, 198.18/15 and the documentation ranges private. Both roles
// pass the CONNECT message's addresses through the service's getDialableMultiaddrs(), so replace
// it on the instance: any IP (or DNS) address with a dial transport, circuit ones excepted; with
// --dcutr-accept CIDR (IPv4, repeatable) only the public ones and those in a listed range.
// The unilateral upgrade that B tries first (a plain dial to A's public identify addresses)
// keeps js's stock filter, so a direct connection on loopback is a real DCUtR one.
function widenDcutrAddressFilter (service, cidrs) {
  const accepted = cidrs.map(parseCidr4)
  service.getDialableMultiaddrs = function (addrs) {
    const output = []
    for (const bytes of addrs ?? []) {
      if (bytes == null || bytes.length === 0) continue
      let ma
      try { ma = multiaddr(bytes) } catch { continue }
      const text = ma.toString()
      if (text.includes('/p2p-circuit')) continue
      if (this.transportManager.dialTransportForMultiaddr(ma) == null) continue
      const first = ma.getComponents()[0]
      if (first?.name?.startsWith('dns')) {
        output.push(ma)
        continue
      }
      if (first?.name !== 'ip4' && first?.name !== 'ip6') continue
      if (accepted.length > 0 && isPrivate(ma) && !(first.name === 'ip4' && accepted.some((inRange) => inRange(first.value)))) continue
      output.push(ma)
    }
    return output
  }
}

// Fix 4 (--fix-responder): as B, DCUtR dials with openConnection(addrs, {initiator: false}) so
// that the dialed socket is upgraded as the responder (libp2p's Upgrader.upgradeOutbound turns
// initiator: false into an 'inbound' upgrade), but DialQueue.dial (libp2p connection-manager/
// dial-queue.js) builds the queued job's options from peerId, priority, multiaddrs, signal and
// onProgress only, so `initiator` never reaches the transport and B dials as the initiator:
// both ends then start multistream-select/Noise as initiator. Even with `initiator: false`
// delivered, Noise and Yamux take their role from the socket's direction (the TCP transport's
// maConn.direction = 'outbound'), so Yamux fails with "Both endpoints are clients". Patched
// here on this node's instances: DialQueue.dial adds `initiator: false` to the job's options
// (queue.add is called synchronously inside dial, before its first await), and
// Upgrader.upgradeOutbound marks such a socket 'inbound' before upgrading it.
function passResponderRoleThrough (node) {
  const { upgrader, connectionManager } = node.components
  const dialQueue = connectionManager.dialQueue
  if (typeof dialQueue?.dial !== 'function' || typeof dialQueue.queue?.add !== 'function' ||
      typeof upgrader?.upgradeOutbound !== 'function') {
    throw new Error('--fix-responder: libp2p internals (dialQueue, upgrader) not where expected')
  }
  const dial = dialQueue.dial
  dialQueue.dial = function (target, options = {}) {
    if (options.initiator !== false) return dial.call(this, target, options)
    const queue = this.queue
    const hadOwnAdd = Object.prototype.hasOwnProperty.call(queue, 'add')
    const add = queue.add
    queue.add = function (fn, jobOptions) {
      return add.call(this, fn, { ...jobOptions, initiator: false })
    }
    try {
      return dial.call(this, target, options)
    } finally {
      if (hadOwnAdd) queue.add = add
      else delete queue.add
    }
  }
  const upgradeOutbound = upgrader.upgradeOutbound
  upgrader.upgradeOutbound = function (maConn, opts) {
    if (opts?.initiator === false) maConn.direction = 'inbound'
    return upgradeOutbound.call(this, maConn, opts)
  }
}

// Fix 2 (--fix-observed): identify drops every observed TCP address (js dials do not leave from
// the listen port, see js-libp2p#2620) and every private one, so js never announces its NAT
// mapping. Confirm what each identify response says we are (not for relayed connections).
function confirmObservedAddrs (node, event) {
  node.addEventListener('peer:identify', (evt) => {
    const observed = evt.detail.observedAddr
    if (observed == null) return
    const text = observed.toString()
    if (text.includes('/p2p-circuit') || !text.includes('/tcp/')) return
    node.components.addressManager.confirmObservedAddr(observed, { type: 'observed' })
    event({ event: 'observed', addr: text, from: evt.detail.peerId.toString() })
  })
}

function formatLog (format, args) {
  let i = 0
  return String(format).replace(/%[a-zA-Z]/g, (spec) => {
    if (i >= args.length) return spec
    const arg = args[i++]
    if (spec === '%e') return String(arg?.message ?? arg)
    if (Array.isArray(arg)) return arg.map(String).join(' ')
    if (spec === '%o' || spec === '%j') {
      try { return JSON.stringify(arg) } catch { return String(arg) }
    }
    return String(arg)
  })
}

function hasDirectConnection (node, peerId) {
  return node.getConnections(peerId).some((conn) => !isRelayed(conn) && conn.status === 'open')
}

// DCUtR outcome lines: js emits no events for it, so wrap the service's entry points on the
// instance (before start: the stream handler is registered in start()). "phase": "start" and
// "end" per DCUtR run (B: upgradeInbound, after identify on an inbound relayed connection lists
// /libp2p/dcutr; A: the /libp2p/dcutr stream handler), "dial" per direct dial it makes
// (role "B-unilateral" for B's plain dial to A's public identify addresses), "error" for each
// error js logs (B's failed attempts are only logged: js swallows them).
function instrumentDcutr (node, service, event) {
  const started = performance.now()
  const seconds = () => (performance.now() - started) / 1000
  const log = service.log
  service.log = Object.assign((...args) => log(...args), log, {
    error: (format, ...args) => {
      event({ event: 'dcutr', phase: 'error', message: formatLog(format, args) })
      log.error(format, ...args)
    }
  })
  const connectionManager = service.connectionManager
  service.connectionManager = new Proxy(connectionManager, {
    get (target, prop) {
      if (prop !== 'openConnection') {
        const value = Reflect.get(target, prop, target)
        return typeof value === 'function' ? value.bind(target) : value
      }
      return async (addrs, options = {}) => {
        const role = options.initiator === false ? 'B' : options.priority != null ? 'A' : 'B-unilateral'
        const list = (Array.isArray(addrs) ? addrs : [addrs]).map(String)
        const t0 = performance.now()
        try {
          const conn = await target.openConnection(addrs, options)
          event({
            event: 'dcutr', phase: 'dial', role, addrs: list, ok: true, remotePeer: conn.remotePeer.toString(),
            remoteAddr: conn.remoteAddr.toString(), direction: conn.direction, dialSeconds: (performance.now() - t0) / 1000
          })
          return conn
        } catch (err) {
          event({
            event: 'dcutr', phase: 'dial', role, addrs: list, ok: false,
            error: String(err?.message ?? err), dialSeconds: (performance.now() - t0) / 1000
          })
          throw err
        }
      }
    }
  })
  const upgradeInbound = service.upgradeInbound.bind(service)
  service.upgradeInbound = async (relayed) => {
    const remotePeer = relayed.remotePeer.toString()
    const t0 = performance.now()
    event({ event: 'dcutr', phase: 'start', role: 'B', remotePeer, at: seconds() })
    let error = null
    try {
      await upgradeInbound(relayed)
    } catch (err) {
      error = String(err?.message ?? err)
      throw err
    } finally {
      event({
        event: 'dcutr', phase: 'end', role: 'B', remotePeer, direct: hasDirectConnection(node, relayed.remotePeer),
        error, runSeconds: (performance.now() - t0) / 1000
      })
    }
  }
  const handleIncomingUpgrade = service.handleIncomingUpgrade
  service.handleIncomingUpgrade = async (stream, relayed) => {
    const remotePeer = relayed.remotePeer.toString()
    const t0 = performance.now()
    event({ event: 'dcutr', phase: 'start', role: 'A', remotePeer, at: seconds() })
    let error = null
    try {
      await handleIncomingUpgrade(stream, relayed)
    } catch (err) {
      error = String(err?.message ?? err)
      throw err
    } finally {
      event({
        event: 'dcutr', phase: 'end', role: 'A', remotePeer, direct: hasDirectConnection(node, relayed.remotePeer),
        error, runSeconds: (performance.now() - t0) / 1000
      })
    }
  }
}

// AutoNAT v1 lines. Server side: {"event": "autonat-server", "remotePeer", "remoteAddr",
// "requested": [addrs], "status", "statusText", "addr"} per request answered. Client side (the
// same service asks peers that support it about its unverified public addresses):
// {"event": "autonat", "addr", "reachable": bool} when js makes up its mind about an address.
function instrumentAutonat (service, event) {
  const handleAutonatMessage = service.handleAutonatMessage.bind(service)
  service.handleAutonatMessage = async (message, connection, options) => {
    const response = await handleAutonatMessage(message, connection, options)
    const requested = []
    for (const bytes of message?.dial?.peer?.addrs ?? []) {
      try { requested.push(multiaddr(bytes).toString()) } catch { requested.push(null) }
    }
    let addr = null
    try {
      if (response?.dialResponse?.addr != null) addr = multiaddr(response.dialResponse.addr).toString()
    } catch {}
    event({
      event: 'autonat-server',
      remotePeer: connection.remotePeer.toString(),
      remoteAddr: connection.remoteAddr.toString(),
      requested,
      status: response?.dialResponse?.status ?? null,
      statusText: response?.dialResponse?.statusText ?? null,
      addr
    })
    return response
  }
  for (const [method, reachable] of [['confirmAddress', true], ['unconfirmAddress', false]]) {
    const original = service[method].bind(service)
    service[method] = (results) => {
      event({ event: 'autonat', addr: results.multiaddr.toString(), reachable })
      return original(results)
    }
  }
}

// AutoNAT v2 lines (--autonat-v2; observation only, js's behaviour is unchanged): the client
// part of @libp2p/autonat-v2 emits no events of its own, so {"event": "autonat-v2", "addr",
// "reachable": bool} when it makes up its mind about an address (its confirmAddress /
// unconfirmAddress). Stock js asks only about public addresses and its server dials only
// public ones, where loopback and the documentation ranges are private: see
// public-ranges.mjs (--public-ranges).
function instrumentAutonatV2 (service, event) {
  const client = service.client
  for (const [method, reachable] of [['confirmAddress', true], ['unconfirmAddress', false]]) {
    const original = client[method].bind(client)
    client[method] = (results) => {
      event({ event: 'autonat-v2', addr: results.multiaddr.toString(), reachable })
      return original(results)
    }
  }
}

// Fix 3 (--fix-dial-port [--dial-port N]): @libp2p/tcp dials from a new ephemeral port each
// time, so the NAT mapping the relay observed is useless for a punch. tcp({dialOpts:
// {localPort}}) makes every dial leave from one port (libuv sets SO_REUSEADDR, so sockets to
// different remotes can share it). It cannot be the listen port on Linux with Node 20: a bind
// conflicts with a listening socket on the same port unless both set SO_REUSEPORT, which
// Node 20 offers for neither (bind EADDRINUSE, checked). So the dial port is N, or a free port
// picked at start (before any dial: the reservation dials to relays happen while starting).
// With --fix-observed, what peers observe of it (the NAT's mapping of that port) is announced;
// nothing listens there, so only a TCP simultaneous open (DCUtR's crossing dials) gets in.
async function pickFreePort (host) {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, host, () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

async function chooseDialPort (values, listen) {
  const given = parseSize('dial-port', values['dial-port'])
  if (given != null && given > 0) return given
  const first = listen.map((addr) => /^\/ip[46]\/([^/]+)\/tcp\//.exec(addr)).find((m) => m != null)
  return await pickFreePort(first?.[1] ?? '0.0.0.0')
}

// ---- main

function parseSize (name, value) {
  if (value == null) return null
  const n = Number(value)
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`--${name} wants a non-negative integer, got ${value}`)
  return n
}

function relayServerInit (values) {
  // circuitRelayServer's reservations options in 4.2.13: defaultDurationLimit (ms, default
  // 2 min) and defaultDataLimit (bytes as a bigint, default 128 KiB) are applied to every
  // reservation unless applyDefaultLimit is false, in which case no Limit is sent at all.
  const reservations = {}
  const duration = parseSize('limit-duration', values['limit-duration'])
  const data = parseSize('limit-data', values['limit-data'])
  const ttl = parseSize('reservation-ttl', values['reservation-ttl'])
  const max = parseSize('max-reservations', values['max-reservations'])
  if (values['no-limit']) {
    if (duration != null || data != null) throw new Error('--no-limit excludes --limit-duration and --limit-data')
    reservations.applyDefaultLimit = false
  }
  if (duration != null) {
    if (duration === 0) throw new Error('--limit-duration wants a positive number of seconds')
    reservations.defaultDurationLimit = duration * 1000
  }
  if (data != null) {
    if (data === 0) throw new Error('--limit-data wants a positive number of bytes')
    reservations.defaultDataLimit = BigInt(data)
  }
  if (ttl != null) {
    if (ttl === 0) throw new Error('--reservation-ttl wants a positive number of seconds')
    reservations.reservationTtl = ttl * 1000
  }
  if (max != null) reservations.maxReservations = max
  return { reservations }
}

// role: 'plain' (listen without --relay, perf, hold: TCP only, as before), 'circuit' (dial,
// listen --relay/--connect/--dcutr: TCP + circuitRelayTransport) or 'relay' (TCP +
// circuitRelayServer). --dcutr and --autonat add those services in any role; `event` receives
// the event lines (see connectionReporter).
async function makeNode (values, listen, { role = 'plain', onConnection, onClose, event = () => {} } = {}) {
  let privateKey
  if (values.seed != null) {
    const seed = Buffer.from(values.seed, 'hex')
    if (seed.byteLength !== 32) throw new Error('--seed wants 64 hex digits (an Ed25519 seed)')
    privateKey = await generateKeyPairFromSeed('Ed25519', seed)
  }
  const fixes = holePunchFixes(values)
  const services = { identify: identify(), ping: ping() }
  if (role === 'relay') services.relay = circuitRelayServer(relayServerInit(values))
  if (values.dcutr) services.dcutr = dcutr()
  if (values.autonat) services.autonat = autoNAT()
  if (values['autonat-v2']) services.autonatV2 = autoNATv2()
  if (values['public-ranges'] && isPrivateIp('127.0.0.1') !== false) {
    throw new Error('--public-ranges needs `node --import ./public-ranges.mjs` (see that file)')
  }
  const dialOpts = {}
  if (fixes.dialPort) {
    dialOpts.localPort = await chooseDialPort(values, listen)
    event({ event: 'dial-port', port: dialOpts.localPort })
  }
  const node = await createLibp2p({
    start: false,
    privateKey,
    addresses: { listen, appendAnnounce: values.announce ?? [] },
    transports: role === 'circuit' ? [tcp({ dialOpts }), circuitRelayTransport()] : [tcp({ dialOpts })],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionMonitor: { enabled: !values['no-monitor'] },
    ...(values['no-conn-limits']
      ? { connectionManager: { allow: ['/ip4/127.0.0.0/ipcidr/8', '/ip6/::1/ipcidr/128'], maxConnections: 100000 } }
      : {}),
    services
  })
  if (values.dcutr) {
    if (fixes.addrFilter) widenDcutrAddressFilter(node.services.dcutr, values['dcutr-accept'] ?? [])
    instrumentDcutr(node, node.services.dcutr, event)
  }
  if (values.autonat) instrumentAutonat(node.services.autonat, event)
  if (values['autonat-v2']) instrumentAutonatV2(node.services.autonatV2, event)
  if (fixes.responder) passResponderRoleThrough(node)
  if (fixes.observed) confirmObservedAddrs(node, event)
  if (onConnection != null) node.addEventListener('connection:open', (evt) => onConnection(evt.detail))
  if (onClose != null) node.addEventListener('connection:close', (evt) => onClose(evt.detail))
  await node.start()
  await node.handle(ECHO, handler('echo', serveEcho), HANDLER_OPTIONS)
  await node.handle(EXAMPLES_ECHO, handler('echo', serveEcho), HANDLER_OPTIONS)
  await node.handle(SINK, handler('sink', serveSink), HANDLER_OPTIONS)
  await node.handle(SOURCE, handler('source', serveSource), HANDLER_OPTIONS)
  await node.handle(PERF, handler('perf', servePerf), HANDLER_OPTIONS)
  return node
}

async function stopNode (node) {
  // node.stop() closes connections gracefully; do not let a stuck peer hold us up.
  await Promise.race([node.stop(), new Promise((resolve) => setTimeout(resolve, 3000).unref())])
}

function connectionReporter (values) {
  // --report-connections: event lines after the ready line (those from before it, e.g. the
  // connection to a relay, are printed right after it). Without it there are none.
  //   {"event": "connection", ...describeConnection} per connection opened;
  //   {"event": "connection-closed", ...describeConnection} per connection closed;
  //   {"event": "direct", "remotePeer", "remoteAddr", "direction", "sinceRelayedSeconds"} per
  //     non-relayed connection opened; sinceRelayedSeconds is the time since the first relayed
  //     connection with that peer opened, null when there was none (e.g. the relay itself);
  //   {"event": "dcutr" | "autonat" | "autonat-server" | "observed" | "addresses" | ...}, see
  //     the header.
  if (!values['report-connections']) {
    return { onConnection: undefined, onClose: undefined, event: () => {}, ready: () => {} }
  }
  let pending = []
  const started = performance.now()
  const firstRelayed = new Map()
  const event = (line) => {
    line = { ...line, t: (performance.now() - started) / 1000 }
    if (pending != null) pending.push(line)
    else emit(line)
  }
  const onConnection = (conn) => {
    const described = describeConnection(conn)
    event({ event: 'connection', ...described })
    if (isRelayed(conn)) {
      if (!firstRelayed.has(described.remotePeer)) firstRelayed.set(described.remotePeer, performance.now())
    } else {
      const since = firstRelayed.get(described.remotePeer)
      event({
        event: 'direct',
        remotePeer: described.remotePeer,
        remoteAddr: described.remoteAddr,
        direction: described.direction,
        sinceRelayedSeconds: since == null ? null : (performance.now() - since) / 1000
      })
      if (values['ping-direct'] && since != null) pingDirect(conn, described, event)
    }
  }
  const onClose = (conn) => {
    event({ event: 'connection-closed', ...describeConnection(conn) })
  }
  const ready = () => {
    const lines = pending
    pending = null
    for (const line of lines) emit(line)
  }
  return { onConnection, onClose, event, ready }
}

function pingDirect (conn, described, event) {
  // --ping-direct: one ping over a direct connection that followed a relayed one with the
  // same peer (a hole punch), as the test-plans hole-punch clients measure their result:
  // {"event": "ping-direct", "remotePeer", "remoteAddr", "rttMs", "reportedMs"} or
  // {"event": "ping-direct-error", "remotePeer", "error"}.
  runPingOnConnection(conn, 1).then(
    (result) => event({
      event: 'ping-direct',
      remotePeer: described.remotePeer,
      remoteAddr: described.remoteAddr,
      rttMs: result.rttsMs[0],
      reportedMs: result.reportedMs[0]
    }),
    (err) => event({ event: 'ping-direct-error', remotePeer: described.remotePeer, error: String(err?.message ?? err) })
  )
}

function reportAddresses (node, reporter) {
  // {"event": "addresses", "addrs"} whenever the addresses js announces change (observed
  // addresses confirmed by --fix-observed or AutoNAT, relay reservations, ...).
  let last = node.getMultiaddrs().map(String).join(' ')
  node.addEventListener('self:peer:update', () => {
    const addrs = node.getMultiaddrs().map(String)
    if (addrs.join(' ') === last) return
    last = addrs.join(' ')
    reporter.event({ event: 'addresses', addrs })
  })
}

async function connectTo (node, targets, reporter) {
  // listen --connect MA: dial each target after the ready line and keep the connection (role A
  // of DCUtR when MA is a circuit address): {"event": "connected", "target", ...describeConnection,
  // "connectSeconds"} or {"event": "connect-error", "target", "error"}.
  for (const target of targets) {
    const { ma } = targetPeer(target)
    const start = performance.now()
    try {
      const conn = await node.dial(ma)
      reporter.event({ event: 'connected', target, ...describeConnection(conn), connectSeconds: (performance.now() - start) / 1000 })
    } catch (err) {
      reporter.event({ event: 'connect-error', target, error: String(err?.message ?? err) })
    }
  }
}

async function waitForRelayedAddrs (node, relays, timeoutMs) {
  // Each relay's reservation shows as <relay addr>/p2p/<relay id>/p2p-circuit/p2p/<own id>.
  const relayIds = relays.map((relay) => targetPeer(relay).peerIdText)
  const deadline = performance.now() + timeoutMs
  while (true) {
    const addrs = node.getMultiaddrs().map((ma) => ma.toString())
    const missing = relayIds.filter((id) => !addrs.some((a) => a.includes(`/p2p/${id}/p2p-circuit`)))
    if (missing.length === 0) return
    if (performance.now() > deadline) {
      throw new Error(`no relayed address via ${missing.join(', ')} after ${timeoutMs / 1000} s; have ${addrs.join(' ')}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

async function listenMode (values) {
  const relays = values.relay ?? []
  const connects = values.connect ?? []
  for (const relay of relays) targetPeer(relay)
  for (const target of connects) targetPeer(target)
  const listen = [...(values.listen ?? ['/ip4/127.0.0.1/tcp/0']), ...relays.map((relay) => `${relay}/p2p-circuit`)]
  const reporter = connectionReporter(values)
  const node = await makeNode(values, listen, {
    role: relays.length > 0 || connects.length > 0 || values.dcutr ? 'circuit' : 'plain',
    ...reporter
  })
  if (relays.length > 0) await waitForRelayedAddrs(node, relays, 15_000)
  serveUntilDone(node, values, reporter)
  reportAddresses(node, reporter)
  if (connects.length > 0) await connectTo(node, connects, reporter)
}

async function relayMode (values) {
  if (values['spec-duration']) announceDurationInSeconds()
  const reporter = connectionReporter(values)
  const node = await makeNode(values, values.listen ?? ['/ip4/127.0.0.1/tcp/0'], {
    role: 'relay',
    ...reporter
  })
  serveUntilDone(node, values, reporter)
  reportAddresses(node, reporter)
}

function serveUntilDone (node, values, reporter) {
  let stopping = false
  const shutdown = async (why) => {
    if (stopping) return
    stopping = true
    log(`stopping: ${why}`)
    await stopNode(node)
    process.exit(0)
  }
  process.on('SIGTERM', () => { void shutdown('SIGTERM') })
  process.on('SIGINT', () => { void shutdown('SIGINT') })
  if (!values['ignore-stdin']) {
    process.stdin.on('end', () => { void shutdown('stdin closed') })
    process.stdin.on('error', () => { void shutdown('stdin error') })
    process.stdin.resume()
  }
  const lifetime = Number(values.lifetime ?? 900)
  // unref(): the listening socket, not this timer, keeps the process alive.
  setTimeout(() => { void shutdown(`lifetime of ${lifetime} s reached`) }, lifetime * 1000).unref()
  // With --public-ranges an unverified loopback address is not announced yet: print the
  // listeners' addresses then.
  let readyAddrs = node.getMultiaddrs().map((ma) => ma.toString())
  if (readyAddrs.length === 0 && values['public-ranges']) {
    readyAddrs = node.components.transportManager.getAddrs().map((ma) => `${ma}/p2p/${node.peerId}`)
  }
  emit({ peerId: node.peerId.toString(), addrs: readyAddrs })
  reporter.ready()
  log(`listening as ${node.peerId} on ${node.getMultiaddrs().join(' ')}`)
}

async function dialMode (values, target) {
  if (target == null) throw new Error('dial wants a multiaddr ending in /p2p/<peer id>')
  const ma = multiaddr(target)
  const peerIdText = ma.getComponents().findLast((c) => c.name === 'p2p')?.value
  if (peerIdText == null) throw new Error(`dial target has no /p2p/ component: ${target}`)
  const sizes = {
    ping: parseSize('ping', values.ping),
    echo: parseSize('echo', values.echo),
    sink: parseSize('sink', values.sink),
    source: parseSize('source', values.source),
    perfUpload: parseSize('perf-upload', values['perf-upload']),
    perfDownload: parseSize('perf-download', values['perf-download'])
  }
  const node = await makeNode(values, values.listen ?? [], { role: 'circuit' })
  const result = { peerId: node.peerId.toString() }
  const identified = new Promise((resolve) => {
    node.addEventListener('peer:identify', (evt) => {
      if (evt.detail.peerId.toString() === peerIdText) resolve(evt.detail)
    })
  })
  const start = performance.now()
  const conn = await node.dial(ma)
  result.connectSeconds = (performance.now() - start) / 1000
  result.remotePeer = conn.remotePeer.toString()
  result.remoteAddr = conn.remoteAddr.toString()
  if (result.remotePeer !== peerIdText) throw new Error(`connected to ${result.remotePeer}, wanted ${peerIdText}`)
  const { remoteAddr, limited, limits } = describeConnection(conn)
  result.connection = { remoteAddr, limited, limits }
  if (!values['no-identify']) result.identify = await runIdentify(node, conn, identified)
  const pause = parseSize('pause', values.pause)
  if (pause != null) await new Promise((resolve) => setTimeout(resolve, pause * 1000))
  if (sizes.ping != null) {
    result.ping = isRelayed(conn) ? await runPingOnConnection(conn, sizes.ping) : await runPing(node, conn.remotePeer, sizes.ping)
  }
  if (sizes.echo != null) result.echo = await runEcho(conn, sizes.echo)
  if (sizes.sink != null) result.sink = await runSink(conn, sizes.sink)
  if (sizes.source != null) result.source = await runSource(conn, sizes.source)
  if (sizes.perfUpload != null || sizes.perfDownload != null) {
    result.perf = await runPerf(conn, sizes.perfUpload ?? 0, sizes.perfDownload ?? 0)
  }
  // What is left of the limits after everything above (js counts the relayed connection's
  // bytes both ways, Noise and Yamux framing included); null when not limited.
  result.connection.limitsRemaining = snapshotLimits(conn.limits)
  result.connection.status = conn.status
  await stopNode(node)
  return result
}

function targetPeer (target) {
  if (target == null) throw new Error('wants a multiaddr ending in /p2p/<peer id>')
  const ma = multiaddr(target)
  const peerIdText = ma.getComponents().findLast((c) => c.name === 'p2p')?.value
  if (peerIdText == null) throw new Error(`target has no /p2p/ component: ${target}`)
  return { ma, peerIdText }
}

async function perfMode (values, target) {
  // Mirrors `python -m libp2p.perf client`: same options, same JSON lines, same timing points.
  const { ma, peerIdText } = targetPeer(target)
  const upload = parseSize('upload-bytes', values['upload-bytes']) ?? 0
  const download = parseSize('download-bytes', values['download-bytes']) ?? 0
  const iterations = parseSize('iterations', values.iterations) ?? 1
  const reuse = values['reuse-connection'] === true
  const node = await makeNode(values, values.listen ?? [])
  let conn = null
  for (let iteration = 0; iteration < iterations; iteration++) {
    const start = performance.now()
    let connectSeconds = 0
    if (conn == null) {
      conn = await node.dial(ma, { force: true })
      connectSeconds = (performance.now() - start) / 1000
      if (conn.remotePeer.toString() !== peerIdText) {
        throw new Error(`connected to ${conn.remotePeer}, wanted ${peerIdText}`)
      }
    }
    const result = await runPerf(conn, upload, download)
    const end = performance.now()
    emit({
      event: 'result',
      iteration,
      time_seconds: (end - start) / 1000,
      connect_seconds: connectSeconds,
      upload_bytes: result.uploadBytes,
      download_bytes: result.downloadBytes,
      upload_seconds: result.uploadSeconds,
      download_seconds: result.downloadSeconds
    })
    if (!reuse) {
      await conn.close()
      conn = null
    }
  }
  await stopNode(node)
}

function stdinLines () {
  // Resolves each call with the next line of stdin, or null once stdin has ended.
  const lines = []
  const waiting = []
  let buffered = ''
  let ended = false
  process.stdin.setEncoding('utf8')
  process.stdin.on('data', (text) => {
    buffered += text
    let at
    while ((at = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, at)
      buffered = buffered.slice(at + 1)
      if (waiting.length > 0) waiting.shift()(line)
      else lines.push(line)
    }
  })
  process.stdin.on('end', () => {
    ended = true
    while (waiting.length > 0) waiting.shift()(null)
  })
  return () => {
    if (lines.length > 0) return Promise.resolve(lines.shift())
    if (ended) return Promise.resolve(null)
    return new Promise((resolve) => { waiting.push(resolve) })
  }
}

async function holdMode (values, target) {
  const { ma } = targetPeer(target)
  const count = parseSize('connections', values.connections) ?? 200
  const nextLine = stdinLines()
  const rss = () => {
    globalThis.gc?.()
    return process.memoryUsage().rss
  }
  const node = await makeNode(values, [])
  const warm = await node.dial(ma, { force: true })
  await runPerf(warm, 1, 1)
  await warm.close()
  emit({ event: 'warm', rss: rss() })
  if (await nextLine() == null) {
    await stopNode(node)
    return
  }
  const conns = []
  for (let i = 0; i < count; i++) {
    const conn = await node.dial(ma, { force: true })
    await runPerf(conn, 1, 1)
    conns.push(conn)
  }
  emit({ event: 'ready', connections: conns.length, rss: rss() })
  while (await nextLine() != null) { /* wait for stdin to close */ }
  await stopNode(node)
}

async function main () {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      listen: { type: 'string', multiple: true },
      seed: { type: 'string' },
      lifetime: { type: 'string' },
      timeout: { type: 'string' },
      'ignore-stdin': { type: 'boolean' },
      'no-monitor': { type: 'boolean' },
      'no-identify': { type: 'boolean' },
      ping: { type: 'string' },
      echo: { type: 'string' },
      sink: { type: 'string' },
      source: { type: 'string' },
      'perf-upload': { type: 'string' },
      'perf-download': { type: 'string' },
      'no-conn-limits': { type: 'boolean' },
      'upload-bytes': { type: 'string' },
      'download-bytes': { type: 'string' },
      iterations: { type: 'string' },
      'reuse-connection': { type: 'boolean' },
      connections: { type: 'string' },
      relay: { type: 'string', multiple: true },
      'report-connections': { type: 'boolean' },
      pause: { type: 'string' },
      'limit-duration': { type: 'string' },
      'limit-data': { type: 'string' },
      'no-limit': { type: 'boolean' },
      'spec-duration': { type: 'boolean' },
      'reservation-ttl': { type: 'string' },
      'max-reservations': { type: 'string' },
      connect: { type: 'string', multiple: true },
      dcutr: { type: 'boolean' },
      autonat: { type: 'boolean' },
      'autonat-v2': { type: 'boolean' },
      'public-ranges': { type: 'boolean' },
      'fix-all': { type: 'boolean' },
      'fix-addr-filter': { type: 'boolean' },
      'dcutr-accept': { type: 'string', multiple: true },
      'fix-observed': { type: 'boolean' },
      announce: { type: 'string', multiple: true },
      'fix-dial-port': { type: 'boolean' },
      'fix-responder': { type: 'boolean' },
      'dial-port': { type: 'string' },
      'ping-direct': { type: 'boolean' }
    }
  })
  const [mode, target] = positionals
  if (mode === 'listen') {
    await listenMode(values)
  } else if (mode === 'relay') {
    await relayMode(values)
  } else if (mode === 'dial') {
    const timeout = Number(values.timeout ?? 60)
    setTimeout(() => {
      emit({ error: `timed out after ${timeout} s` })
      process.exit(1)
    }, timeout * 1000)
    const result = await dialMode(values, target)
    emit(result)
    process.exit(0)
  } else if (mode === 'perf') {
    const timeout = Number(values.timeout ?? 600)
    setTimeout(() => {
      emit({ error: `timed out after ${timeout} s` })
      process.exit(1)
    }, timeout * 1000).unref()
    await perfMode(values, target)
    process.exit(0)
  } else if (mode === 'hold') {
    await holdMode(values, target)
    process.exit(0)
  } else {
    throw new Error(`unknown mode ${JSON.stringify(mode)}: use "listen", "relay", "dial <multiaddr>", "perf <multiaddr>" or "hold <multiaddr>"`)
  }
}

main().catch((err) => {
  log(err?.stack ?? String(err))
  emit({ error: String(err?.message ?? err) })
  process.exit(1)
})
