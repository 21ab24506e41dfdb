// Small DOM helpers shared by the pages.

/**
 * The element matching a selector; throws if there is none, so that a
 * mismatch between a page and its module fails loudly.
 * @param {string} sel
 * @param {ParentNode} [root]
 * @returns {HTMLElement}
 */
export function $(sel, root = document) {
  const el = root.querySelector(sel);
  if (!el) throw new Error(`conclave: the page has no ${sel}`);
  return el;
}

/**
 * Creates an element: h('li', {class: 'x', dataset: {id: '1'}}, 'text', child).
 * Attributes with value false/null/undefined are left out; true gives "".
 * @param {string} tag
 * @param {Object<string, any>} [attrs]
 * @param {...(Node|string|null|undefined|false)} children
 * @returns {HTMLElement}
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'dataset') Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, '');
    else if (v !== false && v != null) el.setAttribute(k, String(v));
  }
  for (const c of children) if (c || c === 0) el.append(c);
  return el;
}

/**
 * Shows exactly one of the elements, hiding the others.
 * @param {HTMLElement[]} all
 * @param {HTMLElement|null} shown
 */
export function showOnly(all, shown) {
  for (const el of all) el.hidden = el !== shown;
}

/**
 * Sets or removes a data attribute.
 * @param {HTMLElement} el
 * @param {string} name the dataset key (camelCase)
 * @param {string|null} value null removes it
 */
export function setData(el, name, value) {
  if (value === null) delete el.dataset[name];
  else if (el.dataset[name] !== value) el.dataset[name] = value;
}

/**
 * The selector of the button with focus inside `root`, to find its
 * replacement after a re-render; '' when focus is elsewhere.
 * @param {HTMLElement} root
 * @returns {string}
 */
export function focusedButton(root) {
  const el = /** @type {HTMLElement|null} */ (document.activeElement);
  if (!el || !root.contains(el) || el.tagName !== 'BUTTON' || !el.dataset.target) return '';
  return `button.${el.classList[0]}[data-target="${CSS.escape(el.dataset.target)}"]`;
}

/**
 * Gives focus back to the button that replaced the one that had it.
 * @param {HTMLElement} root
 * @param {string} selector from focusedButton
 */
export function restoreFocus(root, selector) {
  if (!selector) return;
  const el = /** @type {HTMLElement|null} */ (root.querySelector(selector));
  if (el && !el.disabled) el.focus();
  else if (el) el.closest('li')?.querySelector('button:not([disabled])')?.focus();
}
