// Access control as the meeting page shows it (docs/protocol.md, "Access
// control"): what waiting and leaving screens say, role badges, and what a
// participant's role and the room's rules allow. Pure data, no DOM.

/**
 * What the waiting screen says.
 * @param {'host'|'lobby'|string} wait
 * @returns {string}
 */
export function waitingText(wait) {
  return wait === 'lobby'
    ? 'This meeting is locked. A host has been asked to let you in…'
    : 'Waiting for the host to start the meeting…';
}

/**
 * @typedef {object} LeftScreen
 * @property {string} message the heading (#left-message)
 * @property {string} detail a sentence under it (#left-detail)
 * @property {boolean} rejoin whether a Rejoin button makes sense
 */

/**
 * What the screen shown after the meeting says, for the reason the session
 * ended (a bye reason, 'leave', or the fatal error code 'removed').
 * @param {string} reason
 * @returns {LeftScreen}
 */
export function leftScreen(reason) {
  switch (reason) {
    case 'leave':
    case 'left':
      return { message: 'You left the meeting', detail: '', rejoin: true };
    case 'no-host':
      return { message: 'No host arrived, so the meeting did not start.', detail: 'Try again later, or ask the organiser to start the meeting.', rejoin: true };
    case 'denied':
      return { message: 'A host did not let you in.', detail: 'Ask the organiser if you think this is a mistake.', rejoin: true };
    case 'removed':
      return { message: 'A host removed you from this meeting.', detail: 'You cannot join it again until it ends.', rejoin: false };
    case 'ended':
      return { message: 'The meeting has ended.', detail: '', rejoin: true };
    case 'replaced':
      return { message: 'You are no longer in the meeting', detail: 'You joined this meeting from another window or tab.', rejoin: true };
    case 'server-shutdown':
      return { message: 'You are no longer in the meeting', detail: 'The server is restarting. Rejoin in a moment.', rejoin: true };
    case 'timeout':
      return { message: 'You are no longer in the meeting', detail: 'The connection to the server was lost for too long.', rejoin: true };
    case 'revoked':
      return { message: 'This device was revoked.', detail: 'An administrator revoked its key, and the others no longer trust it. Ask your administrator if you think this is a mistake.', rejoin: false };
    case 'account-disabled':
      return { message: 'Your account has been disabled.', detail: 'An administrator ended your sessions. Ask them if you think this is a mistake.', rejoin: false };
    default:
      return { message: 'You are no longer in the meeting', detail: 'The server ended your presence in the meeting.', rejoin: true };
  }
}

/**
 * The badge shown for a role: "Host", "Guest", or '' for a participant.
 * @param {string} [role]
 * @returns {string}
 */
export function roleLabel(role) {
  return role === 'host' ? 'Host' : role === 'guest' ? 'Guest' : '';
}

/**
 * The role change a host can make for a participant: a host is demoted (to
 * participant when signed in with an account, otherwise to guest); anyone
 * else is promoted to host.
 * @param {{role?: string, account?: boolean}} p
 * @returns {{action: 'promote'|'demote', role: 'host'|'participant'|'guest', label: string}}
 */
export function roleChange(p) {
  if (p.role === 'host') {
    const role = p.account ? 'participant' : 'guest';
    return { action: 'demote', role, label: role === 'guest' ? 'Make guest' : 'Make participant' };
  }
  return { action: 'promote', role: 'host', label: 'Make host' };
}

/**
 * Whether the local participant may turn its microphone on: a guest muted
 * by a host may not while the room's guests may not unmute.
 * @param {{role?: string, muted?: boolean}|null} self
 * @param {{guestsMayUnmute?: boolean}} roomState
 * @returns {boolean}
 */
export function mayUnmute(self, roomState) {
  return !(self?.role === 'guest' && self.muted && !roomState?.guestsMayUnmute);
}

/**
 * Whether the local participant may share its screen.
 * @param {{role?: string}|null} self
 * @param {{guestsMayPresent?: boolean}} roomState
 * @returns {boolean}
 */
export function mayPresent(self, roomState) {
  return !(self?.role === 'guest' && !roomState?.guestsMayPresent);
}

/** The banner shown while no host is in a PIN room. */
export const HOST_LEFT_TEXT = 'The host left. The meeting will end in 2 minutes unless a host returns.';

/**
 * What a notice from the server changes: the banner to show ('' clears it,
 * null leaves it), and a short message for the toast ('' for none).
 * @param {{code: string, message?: string}} n
 * @returns {{banner: string|null, toast: string}}
 */
export function noticeEffect(n) {
  switch (n.code) {
    case 'host-left': return { banner: HOST_LEFT_TEXT, toast: '' };
    case 'host-back': return { banner: '', toast: 'A host is back.' };
    default: return { banner: null, toast: n.message || '' };
  }
}

/**
 * The sentence telling that a host muted the local microphone.
 * @param {string} hostName the host's name, '' when unknown
 * @returns {string}
 */
export function mutedText(hostName) {
  return `${hostName || 'A host'} muted your microphone.`;
}

/**
 * The sentence announcing a knock at a locked meeting.
 * @param {{name?: string, account?: boolean}} p
 * @returns {string}
 */
export function knockText(p) {
  return `${p.name || 'Someone'} (${p.account ? 'account' : 'guest'}) is waiting in the lobby.`;
}
