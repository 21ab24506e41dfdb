// The reconnection schedule of docs/protocol.md: 0.5 s, doubling, at most 5 s.

/** First reconnection delay, in milliseconds. */
export const RECONNECT_FIRST_MS = 500;
/** Longest reconnection delay, in milliseconds. */
export const RECONNECT_MAX_MS = 5000;

/**
 * Delay before reconnection attempt number `attempt` (0 for the first).
 * @param {number} attempt
 * @returns {number} milliseconds
 */
export function reconnectDelay(attempt) {
  const n = Math.max(0, Math.floor(attempt));
  if (n >= 4) return RECONNECT_MAX_MS; // 500 * 2^4 = 8000 > max; avoids huge powers
  return Math.min(RECONNECT_FIRST_MS * 2 ** n, RECONNECT_MAX_MS);
}
