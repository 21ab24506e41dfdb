// A promise queue that runs asynchronous tasks one after the other, so that
// the SDP operations of one peer connection never interleave.

/** Runs tasks strictly in the order they were added. */
export class SerialQueue {
  #tail = Promise.resolve();

  /**
   * Adds a task; it starts when every earlier task has settled.
   * @template T
   * @param {() => T | Promise<T>} task
   * @returns {Promise<T>} the task's result
   */
  run(task) {
    const result = this.#tail.then(() => task());
    this.#tail = result.then(() => {}, () => {});
    return result;
  }
}
