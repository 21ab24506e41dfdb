// User-facing explanations of getUserMedia and getDisplayMedia failures.

/**
 * Explains why the camera and/or microphone could not be used, and what to
 * do. `what` names the devices asked for ("camera and microphone", "camera",
 * "microphone").
 * @param {{name?: string, message?: string}} err the DOMException
 * @param {string} [what]
 * @returns {string}
 */
export function describeMediaError(err, what = 'camera and microphone') {
  switch (err?.name) {
    case 'NotAllowedError':
    case 'SecurityError':
      return `Access to your ${what} is blocked. To allow it, click the camera or lock icon in the address bar, ` +
        `allow the ${what} for this site, then reload the page. You can still join without them.`;
    case 'NotFoundError':
    case 'OverconstrainedError':
      return `No ${what} was found. Connect one and reload the page, or join without.`;
    case 'NotReadableError':
    case 'AbortError':
      return `Your ${what} could not be started: another application may be using it. ` +
        'Close that application and reload the page, or join without.';
    case 'TypeError':
      return 'This browser cannot use a camera or microphone on this page (it needs a secure HTTPS connection).';
    default:
      return `Your ${what} could not be started (${err?.name || 'unknown error'}). You can still join without.`;
  }
}

/**
 * Whether a getDisplayMedia failure is the user cancelling the picker, which
 * needs no message.
 * @param {{name?: string}} err
 * @returns {boolean}
 */
export function isUserCancel(err) {
  return err?.name === 'NotAllowedError' || err?.name === 'AbortError';
}
