// The verification round of the meeting code (docs/e2ee.md, section 14):
// per epoch every member commits to a fresh nonce, its view and its log
// checkpoint, reveals the nonce once it holds everyone's commit, and the
// code hashes the view, every nonce and the agreed checkpoint. The Go twin
// is internal/e2ee/round.go and roundstate.go.

import { MalformedError, Reader, Writer, compare, concat, equal, randomBytes, utf8 } from './bytes.mjs';
import { MAX_ID_LEN, SIGNATURE_LEN, SignatureError, sign, verify } from './identity.mjs';
import { MAX_CHECKPOINT_LEN, openCheckpoint, parseCheckpointUnverified, sameCheckpoint } from './log.mjs';

const COMMIT_TAG = utf8('CCMT');
const REVEAL_TAG = utf8('CRVL');
const ROUND_VERSION = 2;
export const NONCE_LEN = 32;
export const DEFAULT_DIGITS = 12;
/**
 * The highest round a peer's commit may name (Go's e2ee.MaxPeerRound):
 * members follow a peer to a higher round, so one that led everyone to the
 * last round a u32 numbers would leave the meeting no round for its next
 * epoch, and no code for the rest of it.
 */
export const MAX_PEER_ROUND = 2 ** 31;
/**
 * The pace of the rounds (docs/e2ee.md, section 14, rule 1; Go's
 * e2ee.RoundQuiet, RoundMaxWait, CommitRate and CommitBurst): a member
 * commits once its view has been quiet for ROUND_QUIET_MS, and at most
 * ROUND_MAX_WAIT_MS after the first change it has not committed to; every
 * commit takes one of COMMIT_BURST tokens, given back at COMMIT_RATE a
 * second (half the server's budget for verify messages: a commit and at
 * most one reveal per round).
 */
export const ROUND_QUIET_MS = 300;
export const ROUND_MAX_WAIT_MS = 2000;
export const COMMIT_RATE = 1;
export const COMMIT_BURST = 10;

const sha256 = async (b) => new Uint8Array(await globalThis.crypto.subtle.digest('SHA-256', b));

/** Hash of a view: the verified announcements (own included) sorted by participant id, then body. */
export function viewHash(anns) {
  const list = [...anns].sort((x, y) => compare(utf8(x.participantId), utf8(y.participantId)) || compare(x.body, y.body));
  const w = new Writer().raw(utf8('Conclave E2EE v2 view')).u32(list.length);
  for (const a of list) w.bytes32(a.body);
  return sha256(w.bytes());
}

/** Binds a nonce to its meeting, participant and round. */
export function nonceHash(meetingId, participantId, round, nonce) {
  return sha256(new Writer().raw(utf8('Conclave E2EE v2 nonce')).str16(meetingId).str16(participantId).u32(round).raw(nonce).bytes());
}

function encodeCommitBody(c) {
  if (!c.meetingId || utf8(c.meetingId).length > MAX_ID_LEN || !c.participantId || utf8(c.participantId).length > MAX_ID_LEN ||
    !(c.round >= 1) || c.checkpoint.length > MAX_CHECKPOINT_LEN || c.view.length !== 32 || c.nonceHash.length !== 32) {
    throw new Error('e2ee: invalid commit fields');
  }
  return new Writer().raw(COMMIT_TAG).u8(ROUND_VERSION).str16(c.meetingId).str16(c.participantId).u32(c.round)
    .raw(c.view).bytes16(c.checkpoint).raw(c.nonceHash).bytes();
}

/**
 * Signs a commit: "CCMT" | u8(2) | meeting str16 | participant str16 |
 * round u32 | view (32) | checkpoint bytes16 | nonce hash (32), then the
 * device signature.
 */
export async function signCommit(devicePrivate, { meetingId, participantId, round, view, checkpoint }, nonce) {
  const nh = await nonceHash(meetingId, participantId, round, nonce);
  const body = encodeCommitBody({ meetingId, participantId, round, view, checkpoint: utf8(checkpoint ?? ''), nonceHash: nh });
  return concat(body, await sign(devicePrivate, body));
}

/** Parses a commit without checking its signature. */
export function parseCommit(b) {
  const r = new Reader(b);
  const tag = r.take(4);
  if (r.u8() !== ROUND_VERSION || !equal(tag, COMMIT_TAG)) throw new MalformedError('not a commit');
  const c = {};
  c.meetingId = r.str16(MAX_ID_LEN);
  c.participantId = r.str16(MAX_ID_LEN);
  c.round = r.u32();
  c.view = r.take(32);
  c.checkpoint = r.text(r.bytes16(MAX_CHECKPOINT_LEN));
  c.nonceHash = r.take(32);
  const bodyLen = r.o;
  c.signature = r.take(SIGNATURE_LEN);
  if (!r.done() || !c.meetingId || !c.participantId || c.round === 0) throw new MalformedError('commit');
  c.body = b.subarray(0, bodyLen);
  return c;
}

/** Parses a commit and checks it against the member's verified announcement. */
export async function verifyCommit(b, ann) {
  const c = parseCommit(b);
  if (!(await verify(ann.deviceKey, c.body, c.signature))) throw new SignatureError('commit');
  if (c.meetingId !== ann.meetingId || c.participantId !== ann.participantId) throw new Error('e2ee: commit of another meeting or participant');
  return c;
}

/** "CRVL" | u8(2) | meeting str16 | participant str16 | round u32 | nonce (32). */
export function encodeReveal({ meetingId, participantId, round, nonce }) {
  if (nonce.length !== NONCE_LEN || !meetingId || !participantId) throw new Error('e2ee: invalid reveal');
  return new Writer().raw(REVEAL_TAG).u8(ROUND_VERSION).str16(meetingId).str16(participantId).u32(round).raw(nonce).bytes();
}

export function parseReveal(b) {
  const r = new Reader(b);
  const tag = r.take(4);
  if (r.u8() !== ROUND_VERSION || !equal(tag, REVEAL_TAG)) throw new MalformedError('not a reveal');
  const v = { meetingId: r.str16(MAX_ID_LEN), participantId: r.str16(MAX_ID_LEN), round: r.u32(), nonce: r.take(NONCE_LEN) };
  if (!r.done() || !v.meetingId || !v.participantId) throw new MalformedError('reveal');
  return v;
}

export const isCommit = (b) => b.length >= 4 && equal(b.subarray(0, 4), COMMIT_TAG);
export const isReveal = (b) => b.length >= 4 && equal(b.subarray(0, 4), REVEAL_TAG);

/**
 * The meeting code of a completed round: SHA-256 of the label, the view
 * hash, the checkpoint (size u64, root hash) and every (participant id,
 * nonce) sorted by participant id; the first 8 bytes mod 10^digits in
 * groups of three.
 */
export async function meetingCodeV2(view, cp, nonces, digits = DEFAULT_DIGITS) {
  if (!(digits > 0 && digits <= 18)) digits = DEFAULT_DIGITS;
  const sorted = [...nonces].sort((x, y) => compare(utf8(x.participantId), utf8(y.participantId)));
  const w = new Writer().raw(utf8('Conclave E2EE v2 meeting code')).raw(view).u64(cp?.size ?? 0).raw(cp?.hash ?? new Uint8Array(32));
  for (const n of sorted) w.str16(n.participantId).raw(n.nonce);
  const h = new DataView((await sha256(w.bytes())).buffer);
  const d = (h.getBigUint64(0) % (10n ** BigInt(digits))).toString().padStart(digits, '0');
  return d.match(/.{1,3}/g).join(' ');
}

/** An error for a reveal that does not open its commit. */
export class RevealMismatchError extends Error {
  constructor() { super('e2ee: a reveal does not open its commit'); this.name = 'RevealMismatchError'; }
}

const zeroCheckpoint = { origin: '', size: 0, hash: new Uint8Array(32), note: '' };

/**
 * One member's side of the rounds (no I/O), as Go's e2ee.RoundState: the
 * caller sends what it returns as `verify` messages and shows code() (or
 * "verifying" while it is ''). Changes of the view are coalesced: change()
 * records one, and the commit it owes is made by commitDue() once due()
 * (rule 1); while a commit is owed the member neither reveals nor shows a
 * code.
 */
export class RoundState {
  constructor({ meetingId, selfId, device, verifier = null, digits = DEFAULT_DIGITS, now = () => Date.now() }) {
    Object.assign(this, { meetingId, selfId, device, verifier, digits, now });
    this.owed = false; // the latest commit does not name the current view and checkpoint, or a peer of this view leads
    this.urgent = false; // owed at once: a move, an adopted checkpoint
    this.first = 0; // the changes of view not committed to yet (ms; 0: none)
    this.last = 0;
    this.tokens = COMMIT_BURST;
    this.filled = 0; // when tokens was last brought up to date (ms; 0: never)
    this.made = 0; // own commits: the rounds this member took part in
    this.round = 0;
    this.nonce = null;
    this.view = null;
    this.members = new Map();
    this.cp = zeroCheckpoint;
    this.commit = null;
    this.pendingCommit = null;
    this.revealed = false;
    this.epochs = 0;
    this.commits = new Map(); // id -> {commit, cp}
    this.reveals = new Map(); // id -> nonce
    this.code = '';
  }

  /** Records a changed view and commits to it at once, whatever the pace; returns the commit to send. */
  async begin(view, cp) {
    await this.change(view, cp);
    this.#spend(this.now());
    return this.#commitOwed();
  }

  /**
   * Records a changed view (own announcement included) with the trusted
   * checkpoint: a new epoch, whose commit is owed (due()). Nothing revealed
   * before is used again, even if the view comes back to what it was.
   */
  async change(view, cp) {
    const old = this.members;
    this.members = new Map(view.map((a) => [a.participantId, a]));
    for (const id of [...this.commits.keys()]) {
      if (!this.members.has(id) || !old.has(id) || !equal(old.get(id).body, this.members.get(id).body)) {
        this.commits.delete(id);
        this.reveals.delete(id);
      }
    }
    const hash = await viewHash(view);
    this.view = hash;
    this.cp = cp ?? zeroCheckpoint;
    this.epochs++;
    this.code = '';
    const now = this.now();
    if (!this.owed || !this.first) this.first = now;
    this.owed = true;
    this.urgent = false;
    this.last = now;
  }

  /** When the owed commit is due (ms), or null when none is owed. */
  due() {
    if (!this.owed) return null;
    let at = this.now();
    if (!this.urgent && this.first) at = Math.min(this.last + ROUND_QUIET_MS, this.first + ROUND_MAX_WAIT_MS);
    // And a token for the commit.
    const tokens = this.#tokensAt(at);
    if (tokens < 1) at += Math.ceil(((1 - tokens) / COMMIT_RATE) * 1000);
    return at;
  }

  #tokensAt(t) {
    if (!this.filled || t <= this.filled) return this.tokens;
    return Math.min(COMMIT_BURST, this.tokens + ((t - this.filled) / 1000) * COMMIT_RATE);
  }

  #spend(t) {
    this.tokens = Math.max(this.#tokensAt(t) - 1, 0);
    if (t > this.filled) this.filled = t;
  }

  /** Makes the owed commit if it is due (a new round, a fresh nonce); null when none is owed or not yet. */
  commitDue() {
    const at = this.due();
    const now = this.now();
    if (at === null || at > now) return Promise.resolve(null);
    this.#spend(now);
    return this.#commitOwed();
  }

  async #commitOwed() {
    this.owed = false;
    this.urgent = false;
    this.first = 0;
    this.last = 0;
    return this.#recommit(this.cp, this.#nextRound());
  }

  /** How many commits this member made: the rounds it took part in. */
  commitCount() {
    return this.made;
  }

  // The round to move to for a new commit: past our own, joining the
  // highest round a member already committed to for the same view.
  #nextRound() {
    let next = this.round + 1;
    for (const [id, e] of this.commits) {
      if (this.members.has(id) && equal(e.commit.view, this.view) && e.commit.round > next) next = e.commit.round;
    }
    return next;
  }

  // A new round with a fresh nonce: nothing revealed before is ever
  // combined with what comes after.
  async #recommit(cp, round) {
    if (!(round > this.round && round <= 0xffffffff)) throw new Error('e2ee: no round left in this meeting');
    this.round = round;
    this.revealed = false;
    this.pendingCommit = null;
    this.nonce = randomBytes(NONCE_LEN);
    this.cp = cp;
    this.code = '';
    this.commit = null; // nothing to reveal until the new commit exists
    const nonce = this.nonce;
    this.made++;
    const commit = await signCommit(this.device, { meetingId: this.meetingId, participantId: this.selfId, round,
      view: this.view, checkpoint: cp.note }, nonce);
    if (this.round === round) this.commit = commit;
    return commit;
  }

  /**
   * Switches to a larger verified checkpoint: a new round is owed at once;
   * returns its commit when a token allows it now (else commitDue() makes
   * it later), null when cp is not larger.
   */
  adopt(cp) {
    // A member without a log holds the zero checkpoint, smaller than any.
    const larger = cp.size > this.cp.size || (!this.cp.origin && !!cp.origin);
    if (!this.view || !larger) return Promise.resolve(null);
    this.cp = cp;
    this.code = '';
    this.owed = true;
    this.urgent = true;
    return this.commitDue();
  }

  /** The commit of a round onCommit moved to at once (once), for the caller to send; null if none (a move that waits for a token is made by commitDue()). */
  pending() {
    const p = this.pendingCommit;
    this.pendingCommit = null;
    return p;
  }

  /** This member's commit and, once made, its reveal (to send again). */
  own() {
    return { commit: this.commit, reveal: this.revealed ? encodeReveal({ meetingId: this.meetingId, participantId: this.selfId, round: this.round, nonce: this.nonce }) : null };
  }

  /**
   * Verifies and keeps a peer's commit; returns its checkpoint when it
   * differs from the round's (the caller verifies consistency and adopts),
   * else null. A commit of a higher round for the same view moves this
   * member to that round with a fresh nonce: the caller sends pending().
   */
  async onCommit(from, payload) {
    const a = this.members.get(from);
    if (!a || from === this.selfId) throw new Error(`e2ee: a commit from ${from}, who is not in this view`);
    const c = await verifyCommit(payload, a);
    if (c.round > MAX_PEER_ROUND) throw new Error(`e2ee: a commit of ${from} for round ${c.round}, past the rounds a peer may lead to (${MAX_PEER_ROUND})`);
    const old = this.commits.get(from);
    if (old && c.round <= old.commit.round) return null;
    let cp = zeroCheckpoint;
    if (c.checkpoint) cp = this.verifier ? await openCheckpoint(c.checkpoint, this.verifier) : parseCheckpointUnverified(c.checkpoint);
    this.commits.set(from, { commit: c, cp });
    this.reveals.delete(from);
    this.code = '';
    if (c.round > this.round && equal(c.view, this.view)) {
      // A member of this view is a round ahead: move to it with a fresh
      // nonce, at once if a token allows (a commit is owed until then, and
      // nothing is revealed). A revealed nonce is never kept for a commit
      // that came after the reveal, or the relay could choose its nonce
      // knowing ours.
      this.owed = true;
      this.urgent = true;
      this.pendingCommit = await this.commitDue();
    }
    return sameCheckpoint(cp, this.cp) || (cp.size === 0 && this.cp.size === 0 && !cp.origin && !this.cp.origin) ? null : cp;
  }

  /** Keeps a peer's reveal of its latest commit. */
  async onReveal(from, payload) {
    const v = parseReveal(payload);
    const c = this.commits.get(from)?.commit;
    if (!c || v.participantId !== from || v.meetingId !== this.meetingId || v.round !== c.round) return;
    if (!equal(await nonceHash(v.meetingId, v.participantId, v.round, v.nonce), c.nonceHash)) throw new RevealMismatchError();
    this.reveals.set(from, v.nonce);
  }

  #matches(id) {
    const e = this.commits.get(id);
    const same = e && (sameCheckpoint(e.cp, this.cp) || (!e.cp.origin && !this.cp.origin && e.cp.size === this.cp.size));
    return !!e && e.commit.round === this.round && equal(e.commit.view, this.view) && same;
  }

  /** Members whose commit of this round, view and checkpoint is missing. */
  waiting() {
    return [...this.members.keys()].filter((id) => id !== this.selfId && !this.#matches(id));
  }

  // Every member committed to this round, view and checkpoint (waiting()
  // is empty), stopping at the first that did not: it runs on every
  // verify message.
  #complete() {
    for (const id of this.members.keys()) if (id !== this.selfId && !this.#matches(id)) return false;
    return true;
  }

  /** Members whose latest commit names another view, with its round. */
  disagreeing() {
    const out = new Map();
    for (const [id, e] of this.commits) if (this.members.has(id) && !equal(e.commit.view, this.view)) out.set(id, e.commit.round);
    return out;
  }

  /** The round of member id's latest commit when it names another view, else undefined (disagreeing() for one member). */
  disagreeingRound(id) {
    const e = this.commits.get(id);
    return e && this.members.has(id) && !equal(e.commit.view, this.view) ? e.commit.round : undefined;
  }

  /** The reveal, once per round, when every member committed to this round, view and checkpoint; else null. */
  reveal() {
    if (this.revealed || this.owed || !this.commit || !this.#complete()) return null;
    this.revealed = true;
    return this.own().reveal;
  }

  /** The code once every reveal opens its matching commit; '' while incomplete. */
  async currentCode() {
    if (!this.revealed || this.owed || !this.#complete()) return '';
    const nonces = [{ participantId: this.selfId, nonce: this.nonce }];
    for (const id of this.members.keys()) {
      if (id === this.selfId) continue;
      const n = this.reveals.get(id);
      if (!n) return '';
      nonces.push({ participantId: id, nonce: n });
    }
    if (!this.code) this.code = await meetingCodeV2(this.view, this.cp, nonces, this.digits);
    return this.code;
  }
}
