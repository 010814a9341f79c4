/**
 * Freezes `value` and every object it holds. Byte arrays (Buffers: a certificate's `raw`) cannot
 * be frozen and are left as they are, unvisited.
 */
export function deepFreeze<T>(value: T): T {
  if (typeof value !== 'object' || value === null || ArrayBuffer.isView(value) || Object.isFrozen(value)) {
    return value;
  }
  Object.freeze(value);
  for (const child of Object.values(value)) deepFreeze(child);
  return value;
}
