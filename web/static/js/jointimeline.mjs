// The join's timeline: when each phase between the click on Join and the
// first remote video frame decoded happened, in milliseconds after the
// join started, as measured in the page. The join benchmark
// (e2e/jointiming_test.go, scripts/bench) reads it through
// window.conclaveJoin; a test checks that the phases come in order.
//
// Phases (each recorded once, the first time it happens):
//   ws-open       the WebSocket is open (the join message goes out)
//   welcome       admitted: the server's welcome arrived
//   publish       the publish offer went out
//   sub-offer     the first subscribe offer with a track arrived
//   pub-ice       the publishing connection's ICE is connected
//   sub-ice       the subscribing connection's ICE is connected
//   pub-dtls      the publishing connection is connected (DTLS done)
//   sub-dtls      the subscribing connection is connected (DTLS done)
//   first-key     the first remote participant's sender key is installed
//   first-decrypt the first remote video frame is decrypted
//   first-frame   the first remote video frame is decoded

/** The phases, in the order a join normally goes through them. */
export const JOIN_PHASES = Object.freeze([
  'ws-open', 'welcome', 'publish', 'sub-offer', 'pub-ice', 'sub-ice', 'pub-dtls', 'sub-dtls',
  'first-key', 'first-decrypt', 'first-frame',
]);

/** When each phase of one join happened. */
export class JoinTimeline {
  /**
   * @param {() => number} [now] milliseconds, monotonic (performance.now)
   */
  constructor(now = () => globalThis.performance.now()) {
    this.now = now;
    this.start = now();
    /** @type {Map<string, number>} phase -> ms after start */
    this.marks = new Map();
  }

  /**
   * Records a phase the first time it happens; later calls are ignored.
   * @param {string} phase one of JOIN_PHASES
   */
  mark(phase) {
    if (!JOIN_PHASES.includes(phase) || this.marks.has(phase)) return;
    this.marks.set(phase, Math.round((this.now() - this.start) * 10) / 10);
  }

  /** Whether phase has happened. */
  has(phase) { return this.marks.has(phase); }

  /**
   * The phases so far, in the order they happened.
   * @returns {{phase: string, ms: number}[]}
   */
  phases() {
    return [...this.marks].map(([phase, ms]) => ({ phase, ms })).sort((a, b) => a.ms - b.ms);
  }
}
