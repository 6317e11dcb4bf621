// Node 20 lacks Promise.withResolvers (added in Node 22), which libp2p 3.x calls.
// peer.mjs imports this module before anything else.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers () {
    let resolve
    let reject
    const promise = new this((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}
