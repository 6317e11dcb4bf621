// Loaded with `node --import ./public-ranges.mjs peer.mjs ... --public-ranges` (jspeer.py does
// this for public_ranges=True). It makes the whole js process treat loopback (127.0.0.0/8, ::1)
// and the documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32)
// as public addresses, as if the test ran on the internet: @libp2p/utils's isPrivate and
// isPrivateIp, imported by libp2p and its services, answer false for them. Nothing in
// node_modules changes: a module resolution hook hands every importer of '@libp2p/utils' a
// wrapper module (public-ranges-utils.mjs) that re-exports the real one with those two
// functions replaced.
//
// Why: stock js (@libp2p/autonat-v2 included) never asks about, nor dials back, a private
// address, and it counts every range a test may use as private, so without this no AutoNAT v2
// exchange with js can happen here at all. Tests keep stock runs beside the adjusted ones.
import { register } from 'node:module'

register('./public-ranges-hooks.mjs', import.meta.url)
