// @libp2p/utils with loopback and the documentation ranges counted as public (see
// public-ranges.mjs). Local exports take precedence over the star re-export.
import * as real from '@libp2p/utils'

export * from '@libp2p/utils'

const V4 = [[127, 0, 0, 0, 8], [192, 0, 2, 0, 24], [198, 51, 100, 0, 24], [203, 0, 113, 0, 24]]

function inPublicLabRange (ip) {
  if (typeof ip !== 'string') return false
  if (ip === '::1' || /^2001:db8:/i.test(ip)) return true
  const parts = ip.split('.').map(Number)
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p))) return false
  const value = ((parts[0] << 24) | (parts[1] << 16) | (parts[2] << 8) | parts[3]) >>> 0
  return V4.some(([a, b, c, d, bits]) => {
    const net = ((a << 24) | (b << 16) | (c << 8) | d) >>> 0
    const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0
    return ((value & mask) >>> 0) === net
  })
}

export function isPrivateIp (ip) {
  return inPublicLabRange(ip) ? false : real.isPrivateIp(ip)
}

export function isPrivate (ma) {
  try {
    const config = real.getNetConfig(ma)
    if ((config.type === 'ip4' || config.type === 'ip6') && inPublicLabRange(config.host)) return false
  } catch {}
  return real.isPrivate(ma)
}
