// Module resolution hook for public-ranges.mjs: '@libp2p/utils' resolves to the wrapper for
// every importer except the wrapper itself.
const WRAPPER = new URL('./public-ranges-utils.mjs', import.meta.url).href

export async function resolve (specifier, context, nextResolve) {
  if (specifier === '@libp2p/utils' && context.parentURL !== WRAPPER) {
    return { url: WRAPPER, shortCircuit: true }
  }
  return nextResolve(specifier, context)
}
