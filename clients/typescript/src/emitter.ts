/** A small typed event emitter: the same in browsers and Node, no dependency. */

export type Listener<T> = (value: T) => void;

export class Emitter<Events extends object> {
  private listeners: { [K in keyof Events]?: Listener<Events[K]>[] } = {};

  /** Calls `listener` for every `name` event; returns a function that removes it. */
  on<K extends keyof Events>(name: K, listener: Listener<Events[K]>): () => void {
    (this.listeners[name] ??= []).push(listener);
    return () => this.off(name, listener);
  }

  /** Calls `listener` for the next `name` event only. */
  once<K extends keyof Events>(name: K, listener: Listener<Events[K]>): () => void {
    const off = this.on(name, (value) => {
      off();
      listener(value);
    });
    return off;
  }

  off<K extends keyof Events>(name: K, listener: Listener<Events[K]>): void {
    const list = this.listeners[name];
    if (list !== undefined) {
      const at = list.indexOf(listener);
      if (at >= 0) {
        list.splice(at, 1);
      }
    }
  }

  protected emit<K extends keyof Events>(name: K, value: Events[K]): void {
    for (const listener of [...(this.listeners[name] ?? [])]) {
      try {
        listener(value);
      } catch (error) {
        // A game's bug must not break the connection's state: report it, go on.
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }
}
