package browser

// E2EEWorkerReportJS asks the meeting page's media encryption worker for
// its report (FrameCryptor.report in web/static/js/e2ee/framecryptor.mjs):
// per remote participant the frames decrypted, without a key and failing
// authentication, and when each generation first decrypted; and
// sendingSince, when the page began encrypting with each generation of
// its own sender key (a rotation adds one). The page must have been
// instrumented (window.__workers, see Start).
const E2EEWorkerReportJS = `(async () => {
  const w = (window.__workers || []).find((x) => x.url.includes('/e2ee/worker.mjs'));
  if (!w) return {participants: {}};
  const seq = Math.random();
  return await new Promise((resolve) => {
    const h = (e) => {
      if (e.data?.op !== 'stats' || e.data.seq !== seq) return;
      w.worker.removeEventListener('message', h);
      resolve(e.data.report);
    };
    w.worker.addEventListener('message', h);
    w.worker.postMessage({op: 'stats', seq});
  });
})()`
