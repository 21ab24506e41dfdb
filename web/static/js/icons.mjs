// Line icons drawn as inline SVG from the module (no markup, no CSP issue).

const SVG = 'http://www.w3.org/2000/svg';
const MIC = ['M12 2a3 3 0 0 0-3 3v6a3 3 0 0 0 6 0V5a3 3 0 0 0-3-3z', 'M19 10v1a7 7 0 0 1-14 0v-1', 'M12 18v4', 'M8 22h8'];
const CAM = ['M3 7h12v10H3z', 'M15 10.5l6-3.5v10l-6-3.5'];
const SLASH = ['M3 3l18 18'];

const PATHS = {
  mic: MIC,
  'mic-off': [...MIC, ...SLASH],
  camera: CAM,
  'camera-off': [...CAM, ...SLASH],
  screen: ['M3 4h18v12H3z', 'M8 21h8', 'M12 16v5'],
  people: ['M9 11a4 4 0 1 0 0-8 4 4 0 0 0 0 8z', 'M2 21v-1a7 7 0 0 1 14 0v1', 'M16 3.5a4 4 0 0 1 0 7', 'M22 21v-1a7 7 0 0 0-4-6.3'],
  leave: ['M15 3h4a2 2 0 0 1 2 2v14a2 2 0 0 1-2 2h-4', 'M10 17l-5-5 5-5', 'M5 12h11'],
  lock: ['M5 11h14v10H5z', 'M8 11V7a4 4 0 0 1 8 0v4'],
  lobby: ['M4 21h16', 'M6 21V3h12v18', 'M14 12h.01'],
  settings: ['M4 6h16', 'M4 12h16', 'M4 18h16', 'M9 4v4', 'M15 10v4', 'M7 16v4'],
  end: ['M12 2v10', 'M18.4 6.6a9 9 0 1 1-12.8 0'],
  chat: ['M21 12a8 8 0 0 1-11.6 7.1L3 21l1.9-6.4A8 8 0 1 1 21 12z'],
  'mute-all': ['M11 5L6 9H2v6h4l5 4z', 'M22 9l-6 6', 'M16 9l6 6'],
  'layout-grid': ['M3 3h8v8H3z', 'M13 3h8v8h-8z', 'M3 13h8v8H3z', 'M13 13h8v8h-8z'],
  'layout-speaker': ['M3 3h18v12H3z', 'M3 18h5v3H3z', 'M9.5 18h5v3h-5z', 'M16 18h5v3h-5z'],
  fullscreen: ['M3 9V3h6', 'M15 3h6v6', 'M21 15v6h-6', 'M9 21H3v-6'],
  'fullscreen-exit': ['M9 3v6H3', 'M21 9h-6V3', 'M15 21v-6h6', 'M3 15h6v6'],
  pin: ['M9 3h6l-1 6 4 4H6l4-4z', 'M12 13v8'],
};

/**
 * A decorative (aria-hidden) SVG icon.
 * @param {keyof PATHS} name
 * @returns {SVGSVGElement}
 */
export function icon(name) {
  const svg = document.createElementNS(SVG, 'svg');
  for (const [k, v] of Object.entries({
    viewBox: '0 0 24 24', width: '20', height: '20', fill: 'none', stroke: 'currentColor',
    'stroke-width': '2', 'stroke-linecap': 'round', 'stroke-linejoin': 'round', 'aria-hidden': 'true',
    focusable: 'false', class: 'icon',
  })) svg.setAttribute(k, v);
  for (const d of PATHS[name] ?? []) {
    const p = document.createElementNS(SVG, 'path');
    p.setAttribute('d', d);
    svg.append(p);
  }
  return svg;
}
