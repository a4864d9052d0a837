// A mutex over one 32-bit word of shared memory, for the dataplane threads that share a translator's state.

/**
 * The word is 0 (free), 1 (held) or 2 (held, and someone may be waiting).
 * lock() spins briefly, since critical sections are a packet's translation,
 * then sleeps in Atomics.wait, so it may only be used off the main thread.
 */
export class Mutex {
  constructor(
    private readonly word: Int32Array,
    private readonly at = 0,
  ) {}

  /** One word of shared memory for a Mutex. */
  static memory(): SharedArrayBuffer {
    return new SharedArrayBuffer(4);
  }

  lock(): void {
    const w = this.word;
    const i = this.at;
    if (Atomics.compareExchange(w, i, 0, 1) === 0) return;
    for (let spin = 0; spin < 200; spin++) {
      if (Atomics.load(w, i) === 0 && Atomics.compareExchange(w, i, 0, 1) === 0) return;
    }
    // Mark the word contended; whoever unlocks then wakes a sleeper.
    while (Atomics.exchange(w, i, 2) !== 0) Atomics.wait(w, i, 2);
  }

  unlock(): void {
    const w = this.word;
    const i = this.at;
    if (Atomics.sub(w, i, 1) !== 1) {
      Atomics.store(w, i, 0);
      Atomics.notify(w, i, 1);
    }
  }
}
